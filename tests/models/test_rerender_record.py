"""A re-render reports what its run folder ran, not the flags it was called with."""

import json
from pathlib import Path

from cascade_cli import _complete_v2_runs

METHODS = ("uniform", "cem_session")


def _run_folder(root: Path, steps: int, eval_users: int, niceness: int) -> Path:
    for seed in (101, 202):
        for method in METHODS:
            folder = root / str(seed) / method
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"metrics": {"return": 1.0}}))
    config = {"run": {"steps": steps}, "eval_users": eval_users}
    (root / "all.json").write_text(json.dumps({"config": config, "niceness": niceness}))
    return root


def test_the_folders_all_json_overrides_the_default_flags(tmp_path: Path) -> None:
    runs = _run_folder(tmp_path, steps=200, eval_users=1000, niceness=19)
    record = _complete_v2_runs(runs, METHODS, eval_users=500, steps=300, seeds=(101, 202), world="v2.1")
    assert record["config"]["run"]["steps"] == 200
    assert record["config"]["eval_users"] == 1000
    assert record["niceness"] == 19
    assert sorted(record["per_seed"]) == ["101", "202"]


def test_without_all_json_the_flags_describe_the_run(tmp_path: Path) -> None:
    runs = _run_folder(tmp_path, steps=200, eval_users=1000, niceness=19)
    (runs / "all.json").unlink()
    record = _complete_v2_runs(runs, METHODS, eval_users=500, steps=300, seeds=(), world="v2.1")
    assert record["config"]["run"]["steps"] == 300
    assert record["config"]["eval_users"] == 500
    assert record["niceness"] == 0
