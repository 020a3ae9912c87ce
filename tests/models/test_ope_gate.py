"""The loop's promotion gate on a real log: decisions served by the real app, rewards from simulated
users through POST /v1/feedback, joined, and judged off-policy (models/ope). The log comes from the
`logged` fixture (tests/models/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contracts.store import active_version, bundle_path, read_manifest
from models.algorithms.replay_trainer import reward_weights
from models.log.transitions import LoggedTransitions
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import load_checkpoint
from models.ope.gate import GateConfig, judge
from models.sim.config import SimConfig
from models.sim.simulator import Simulator


def test_a_deliberately_worse_candidate_is_refused(exploring_store: Path, logged: LoggedTransitions) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))
    worse = load_checkpoint(bundle, read_manifest(bundle))
    n_objectives = worse.config.n_objectives
    with torch.no_grad():
        # Push every power w_j towards 0: the fused score stops telling good items from bad ones.
        worse.fusion.net[-1].bias[:n_objectives] -= 2.0

    verdict = judge(active, worse, logged, GateConfig(margin=0.0, min_ess=10.0))

    assert len(logged) == 300  # every decision explored, so every one is usable
    assert verdict.publish is False
    assert verdict.candidate.value < verdict.active.value
    assert verdict.as_dict()["gate"] == "refuse"


def test_the_loops_doubly_robust_gate_refuses_the_deliberately_worse_candidate(
    exploring_store: Path, logged: LoggedTransitions
) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))
    worse = load_checkpoint(bundle, read_manifest(bundle))
    with torch.no_grad():
        worse.fusion.net[-1].bias[: worse.config.n_objectives] -= 2.0  # the candidate of the test above

    # The loop's gate (pipelines.loop.LoopConfig.gate) but for min_ess: 300 decisions here, thousands there.
    verdict = judge(active, worse, logged, GateConfig(estimator="dr", margin=0.0, min_ess=10.0), _weights(active))

    # This candidate is ~3% worse in the simulator; with 300 decisions the estimate's standard error is about
    # as large, so the point estimates may land either way: the lower bound is what refuses it.
    assert verdict.publish is False
    assert verdict.difference_lower_bound < 0.0
    assert verdict.as_dict()["gate"] == "refuse" and verdict.as_dict()["estimator"] == "dr"


def test_the_doubly_robust_gate_ranks_a_candidate_blind_to_the_sparse_objectives_below_the_active(
    exploring_store: Path, logged: LoggedTransitions
) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))
    blind = load_checkpoint(bundle, read_manifest(bundle))
    with torch.no_grad():
        blind.fusion.net[-1].bias[1 : blind.config.n_objectives] -= 10.0  # w_j ≈ 0 for all but watch time

    verdict = judge(active, blind, logged, GateConfig(estimator="dr", margin=0.0, min_ess=10.0), _weights(active))

    assert verdict.publish is False
    assert verdict.candidate.value < verdict.active.value  # the reward model sees what the weights cannot


@pytest.mark.parametrize("estimator", ["snips", "dr"])
def test_the_active_version_itself_does_not_clear_the_gate(
    exploring_store: Path, logged: LoggedTransitions, estimator: str
) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))

    verdict = judge(active, active, logged, GateConfig(estimator=estimator, margin=0.0), _weights(active))

    assert verdict.candidate.value == pytest.approx(verdict.active.value)
    assert verdict.candidate.ess == pytest.approx(300, rel=1e-3)  # the log is the active version's own
    assert verdict.publish is False


def _weights(policy: CascadePolicy) -> torch.Tensor:
    return reward_weights(policy.config.objectives, Simulator(SimConfig(), seed=0).business_weights)
