"""The demo policy in simulator v2: trained on sessions with γ > 0, reported in a scale-free form."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.algorithms.demo_policy import session_demo_config, train_demo_policy
from models.env.rollout import evaluate_fusion, user_states
from models.nets.checkpoint import load_checkpoint
from models.sim.world import SimulatorV2
from pipelines.demo import evaluate_bundle, publish_demo
from tests.tiny_policy import tiny_contextual_config


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


def test_the_contextual_demo_serves_one_action_per_segment_from_a_verified_bundle(tmp_path: Path) -> None:
    assert session_demo_config(0, "v2.1").fusion_search == "contextual_cem"
    assert session_demo_config(0, "v2").fusion_search == "a3c"
    config = tiny_contextual_config()
    trained = train_demo_policy(config)
    search = trained.report["contextual_cem"]
    assert trained.report["world"] == "v2.1"
    # The manifest shows the table against the constant it started from, on the same held-out users.
    returns = trained.evaluation["session_return"]
    assert set(returns) == {"policy", "uniform", "best_constant"}  # type: ignore[arg-type]
    table = torch.tensor(search["table"])  # type: ignore[index]
    assert table.shape == (5, trained.policy.fusion.action_dim)
    manifest = publish_demo(trained, tmp_path / "store", config, version="t1")
    assert manifest.parity.passed  # the ONNX graph equals the torch actor the table was written into
    restored = load_checkpoint(tmp_path / "store" / "demo" / "t1", manifest)
    sim = trained.simulator
    assert isinstance(sim, SimulatorV2)
    states = user_states(sim, 200, np.random.default_rng(1))
    with torch.no_grad():
        served = restored.fusion(states, torch.zeros(200, restored.fusion.action_dim)).mean
    segment = torch.from_numpy(np.argmax(states[:, :5].numpy(), axis=1))
    assert torch.allclose(served, table[segment], atol=1e-3)
    # `cascade evaluate` scores the bundle in the world it was trained in (v2.1), not in a v1 world.
    bundle = tmp_path / "store" / "demo" / "t1"
    sizes = manifest.stage_sizes
    want = evaluate_fusion(
        restored,
        sim,
        n_requests=8,
        n_candidates=config.sim.candidates_per_request,
        stage_sizes=(sizes[0], sizes[1], sizes[2]),
        k=10,
        seed=1,
    )
    assert evaluate_bundle(bundle, requests=8, seed=1) == want
