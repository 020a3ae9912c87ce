"""The loop's RESULTS.md section is rendered from run folders, and re-rendering replaces it in place."""

from __future__ import annotations

import json
from pathlib import Path

from models.reports.loop import END, START, write_loop_results


def _run(root: Path, seed: int, returns: list[float], published: list[bool]) -> None:
    reports = []
    for i, value in enumerate(returns):
        report: dict[str, object] = {
            "iteration": i,
            "phase": {"true_return": value, "true_return_stderr": 1.0},
            "published": published[i] if i < len(published) else False,
        }
        if i < len(published):
            estimate = {"value": 100.0, "stderr": 5.0, "ess": 80.0, "n": 90}
            verdict = "publish" if published[i] else "refuse"
            report["gate"] = {"gate": verdict, "active": estimate, "candidate": estimate, "held_out": 90}
        reports.append(report)
    (root / f"seed-{seed}").mkdir(parents=True)
    (root / f"seed-{seed}" / "loop.json").write_text(json.dumps(reports))


def test_the_section_holds_the_runs_numbers_and_replaces_itself(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, 0, [100.0, 101.0, 103.0], [True, False])
    _run(runs, 1, [90.0, 90.0, 92.0], [False, True])
    _run(runs, 2, [95.0, 96.0, 98.0], [False, False])
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nthe seeds table\n")

    write_loop_results(runs, results, "cascade loop …", 600.0, "test box")
    write_loop_results(runs, results, "cascade loop …", 600.0, "test box")

    text = results.read_text()
    assert text.startswith("# Results\n\nthe seeds table\n")
    assert text.count(START) == text.count(END) == 1
    assert "| 0 | 100.00 | 90.00 | 95.00 | 95.00 ± 5.00 |" in text
    assert "| lift (last − first) | +3.00 | +2.00 | +3.00 | 2.67 ± 0.58 |" in text
    assert "seed 0: 1, seed 1: 1, seed 2: 0" in text
    assert "10.0 min for 3 seeds on test box" in text
    assert (tmp_path / "loop.png").read_bytes()[:4] == b"\x89PNG"
