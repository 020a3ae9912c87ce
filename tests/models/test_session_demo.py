"""The demo policy in simulator v2: trained on sessions with γ > 0, reported in a scale-free form."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.algorithms.demo_policy import session_demo_config, train_demo_policy
from models.sim.world import SimulatorV2


def test_session_demo_trains_in_v2_with_discount_and_reports_scale_free_weights() -> None:
    base = session_demo_config(seed=0)
    config = replace(
        base,
        head_steps=3,
        rnd_steps=3,
        eval_users=16,
        session_run=replace(base.session_run, steps=3, sessions=8, n_candidates=30, stage_sizes=(20, 15, 10)),
    )
    trained = train_demo_policy(config)
    assert isinstance(trained.simulator, SimulatorV2)
    assert trained.report["world"] == "v2" and trained.report["a3c"]["gamma"] == pytest.approx(0.95)  # type: ignore[index]
    evaluation = trained.evaluation
    assert set(evaluation["session_return"]) == {"policy", "uniform"}  # type: ignore[arg-type]
    shares = evaluation["power_shares"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)  # type: ignore[attr-defined]
    # The served request context stays the 4 columns a client sends.
    assert trained.policy.config.context_dim == 4
