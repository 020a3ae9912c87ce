from __future__ import annotations

from pathlib import Path

import numpy as np

from models.experiments.session_methods import ExperimentConfig
from models.reports.sections import update_section
from models.reports.session_methods import write_results

METHODS = (
    "hand_tuned_cem", "a3c_gamma_0", "a3c_gamma_0.95", "multi_critic", "lagrangian_a3c", "two_stage",
    "a3c_srs", "a3c_srs2", "a3c_rnd", "independent_stages", "unex_rl",
)  # fmt: skip


def _fake(seed: int, method: str) -> dict[str, object]:
    rng = np.random.default_rng([seed, len(method)])
    metrics = {"return": 100.0 + len(method) + seed, "depth": 5.0 + seed}
    for name in ("watch_time", "like", "follow", "share", "comment"):
        metrics[name] = float(rng.uniform(1, 2))
        metrics[f"{name}_per_request"] = float(rng.uniform(0.1, 0.2))
    log = {"rewards": list(rng.uniform(size=40)), "grad_norms": list(rng.uniform(size=40)), "critic_losses": []}
    log["extra"] = {"signal_std": [0.5]}
    thresholds = {name: 1.0 for name in ("like", "follow", "share", "comment")}
    return {"metrics": metrics, "seconds": 1.0, "thresholds": thresholds, "log": log}


def test_results_are_rendered_from_the_runs_not_typed_in(tmp_path: Path) -> None:
    per_seed = {seed: {m: _fake(seed, m) for m in METHODS} for seed in range(3)}
    path = write_results(per_seed, ExperimentConfig(), tmp_path / "RESULTS.md", seconds=90.0, machine="test box")
    text = path.read_text()
    # Returns are 100 + len(name) + seed: both names have 14 characters, so the rows are equal, seed by seed.
    row = "| a3c_gamma_0.95 vs hand_tuned_cem | return | 115.0 ± 1.0 | 115.0 ± 1.0 | +0.0 [+0.0, +0.0] (MDE 0.0) |"
    assert row in text
    # The interpretation is generated from these numbers: equal rows show no direction.
    assert "a3c_gamma_0.95 is level with hand_tuned_cem on return by +0.0" in text and "no direction is shown" in text
    assert "test box" in text and "1.5 min for 3 seeds" in text
    assert (tmp_path / "results.png").stat().st_size > 10_000


def test_rewriting_the_seeds_tables_keeps_the_other_experiments_sections(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# old seeds tables\n")
    update_section(path, "offline:ope", "## OPE\n\nfirst run")
    update_section(path, "offline:resact", "## ResAct\n\nrun")
    update_section(path, "offline:ope", "## OPE\n\nsecond run")  # replaced in place, not appended again
    assert path.read_text().count("## OPE") == 1 and "second run" in path.read_text()

    per_seed = {seed: {m: _fake(seed, m) for m in METHODS} for seed in range(3)}
    text = write_results(per_seed, ExperimentConfig(), path, seconds=90.0, machine="test box").read_text()

    assert "# old seeds tables" not in text and "# Results: the seed methods" in text
    assert "<!-- offline:ope:start -->\n## OPE\n\nsecond run\n<!-- offline:ope:end -->" in text
    assert "<!-- offline:resact:start -->\n## ResAct\n\nrun\n<!-- offline:resact:end -->" in text
