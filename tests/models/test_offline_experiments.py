"""The offline experiments (OPE, ResAct, EnhancedRL) at smoke size: each runs over seeds and renders its
RESULTS.md section from the record it returns (the numbers in the tables are the record's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.algorithms.enhanced_rl import EnhancedRLConfig
from models.algorithms.offline_baselines import BaselineConfig
from models.algorithms.resact import ResActConfig
from models.env.offline_data import OfflineConfig, in_world
from models.experiments.enhanced_rl import EnhancedExperimentConfig
from models.experiments.enhanced_rl import run as run_enhanced
from models.experiments.ope_validation import ESTIMATOR_NAMES, OPEValidationConfig
from models.experiments.ope_validation import run as run_ope
from models.experiments.resact_offline import METHODS, ResActExperimentConfig
from models.experiments.resact_offline import run as run_resact
from models.reports.offline import enhanced_section, ope_section, resact_section
from models.reports.sections import update_section
from models.sim.world import SimulatorV2

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMOKE = OfflineConfig(sessions=8, log_steps=5, n_candidates=20)


def _saved(record: dict[str, object]) -> dict[str, object]:
    """As the CLI saves it: JSON (seed keys become strings) with the machine line."""
    return json.loads(json.dumps({**record, "machine": "test box", "cpu_seconds": 6.0}, default=str))


def _smoke_runs(offline: OfflineConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The three experiments at smoke size on two seeds: OPE, ResAct, EnhancedRL records."""
    ope = run_ope(OPEValidationConfig(seeds=(0, 1), offline=offline, eval_users=20, reward_model_steps=5))
    resact = run_resact(
        ResActExperimentConfig(
            seeds=(0, 1),
            offline=offline,
            resact=ResActConfig(steps=4, batch=8),
            baseline=BaselineConfig(steps=4, batch=8),
            eval_users=20,
        )
    )
    enhanced = run_enhanced(
        EnhancedExperimentConfig(
            seeds=(0, 1),
            enhanced=EnhancedRLConfig(offline=offline, steps=4, sessions=4, batch=4, warmup=2),
            eval_users=20,
        )
    )
    return ope, resact, enhanced


def test_each_experiment_renders_its_section_from_its_own_record(tmp_path: Path) -> None:
    ope, resact, enhanced = (_saved(record) for record in _smoke_runs(SMOKE))
    path = tmp_path / "RESULTS.md"
    update_section(path, "offline:ope", ope_section(ope, "cmd ope"))
    update_section(path, "offline:resact", resact_section(resact, "cmd resact"))
    update_section(path, "offline:enhanced", enhanced_section(enhanced, "cmd enhanced"))
    text = path.read_text()

    for command in ("cmd ope", "cmd resact", "cmd enhanced"):
        assert f"Command: `{command}`" in text and "0.1 min CPU" in text
    assert all(f"| {name} |" in text for name in ESTIMATOR_NAMES)
    assert all(f"| {method} |" in text for method in METHODS)
    assert "| enhanced_rl vs user_level_a3c | return |" in text
    per_seed = resact["per_seed"]
    assert isinstance(per_seed, dict)
    returns = np.array([per_seed[s]["resact"]["return"] for s in per_seed])
    assert f"| resact | {returns.mean():.1f} ± {returns.std(ddof=1):.1f} |" in text
    # A run in another world says so in its title (its section sits beside the first world's).
    assert "(simulator" not in text
    assert ope_section({**ope, "world": "v2.1"}, "cmd").startswith(
        "## Off-policy evaluation against the simulator's truth (simulator v2.1)\n"
    )


def test_the_offline_experiments_run_in_simulator_v2() -> None:
    smoke = in_world(SMOKE, "v2")
    assert smoke.k == 6 and smoke.sim.item_dim == 12
    assert isinstance(smoke.simulator(0), SimulatorV2)
    ope, resact, enhanced = _smoke_runs(smoke)
    assert ope["config"]["offline"]["world"] == resact["config"]["offline"]["world"] == "v2"
    assert enhanced["config"]["enhanced"]["offline"]["world"] == "v2"
    for record in (ope, resact, enhanced):
        values = [v for row in record["per_seed"].values() for method in row.values() for v in _numbers(method)]
        assert values and np.isfinite(values).all()


def _numbers(row: object) -> list[float]:
    return [float(v) for v in row.values() if isinstance(v, int | float)] if isinstance(row, dict) else []
