"""The loop's RESULTS.md section is rendered from run folders, and re-rendering replaces it in place."""

from __future__ import annotations

import json
from pathlib import Path

from models.reports.loop import END, START, markers, write_loop_results


def _run(
    root: Path, seed: int, returns: list[float], published: list[bool], sessions: list[float] | None = None
) -> None:
    reports = []
    for i, value in enumerate(returns):
        phase: dict[str, object] = {"true_return": value, "true_return_stderr": 1.0}
        if sessions is not None:
            phase["session_return"] = sessions[i]
        report: dict[str, object] = {
            "iteration": i,
            "phase": phase,
            "published": published[i] if i < len(published) else False,
        }
        if i < len(published):
            estimate = {"value": 100.0, "stderr": 5.0, "ess": 80.0, "n": 90}
            verdict = "publish" if published[i] else "refuse"
            gate: dict[str, object] = {"gate": verdict, "active": estimate, "candidate": estimate, "held_out": 90}
            if sessions is not None:
                active = {"gaussian": 3.0, "session_return": sessions[i]}
                gate["simulated_truth"] = {
                    "active": active,
                    "candidate": {"gaussian": 3.1, "session_return": sessions[i] - 0.5},
                }
            report["gate"] = gate
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


def test_a_session_world_section_has_the_session_return_per_phase_under_its_own_markers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, 0, [3.0, 3.1, 3.2], [True, True], sessions=[66.0, 65.0, 64.0])
    _run(runs, 1, [3.0, 3.0, 3.1], [True, False], sessions=[60.0, 59.0, 59.0])
    _run(runs, 2, [3.0, 3.0, 3.0], [False, False], sessions=[70.0, 70.0, 70.0])
    results = tmp_path / "RESULTS.md"
    write_loop_results(runs, tmp_path / "RESULTS.md", "cascade loop --world v2.1", 60.0, "box")
    write_loop_results(runs, results, "cascade loop --world v2.1", 60.0, "box", section="loop:v21")

    text = results.read_text()
    start, end = markers("loop:v21")
    assert text.count(start) == text.count(end) == 1 and text.count(START) == 1  # two sections side by side
    v21 = text.split(start, 1)[1].split(end, 1)[0]
    assert "| 0 | 66.00 | 60.00 | 70.00 | 65.33 ± 5.03 |" in v21
    assert "| lift (last − first) | -2.00 | -1.00 | +0.00 | -1.00 [" in v21
    assert "3.00 | 3.10 | 66.00 | 65.50 |" in v21  # the gate table's session columns: active, candidate
    assert "Session return, last phase − first: -1.00" in v21
    assert "loop-v21.png" in v21 and (tmp_path / "loop-v21.png").read_bytes()[:4] == b"\x89PNG"


def test_the_section_says_when_trainer_and_gate_followed_the_recalibrated_reward_model(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        _run(runs, seed, [3.0, 3.1], [True])
        folder = runs / f"seed-{seed}"
        reports = json.loads((folder / "loop.json").read_text())
        reports[0]["candidate"] = "loop-it0"
        reports[0]["gate"] |= {"estimator": "dr", "reward_model": {"model": "recalibrated", "ridge": 10.0}}
        (folder / "loop.json").write_text(json.dumps(reports))
        manifest = folder / "bundles" / "loop-it0" / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text(
            json.dumps({"training": {"trainer": "models.algorithms.replay_trainer", "recalibrate": True}})
        )
    results = tmp_path / "RESULTS.md"
    write_loop_results(runs, results, "cascade loop", 60.0, "box")

    text = results.read_text()
    assert "recalibrated per state on the training users' logged rewards" in text
    assert "DR (its reward model recalibrated on the training users) on held-out users' explored decisions" in text
