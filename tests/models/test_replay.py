"""Replaying logged requests (models/algorithms/replay_trainer.py) on a real log: the service's decisions
with their logged candidates (the `logged` fixture, tests/models/conftest.py), replayed through the
bundle's checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contracts.store import active_version, bundle_path, read_manifest
from models.algorithms.replay_trainer import (
    ReplayConfig,
    draws,
    expected_replayed_reward,
    replay_agreement,
    reward_weights,
    survivor_predictions,
    train_on_replay,
)
from models.algorithms.reward_calibration import RewardCalibration
from models.log.transitions import LoggedTransitions
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import load_checkpoint
from models.sim.config import SimConfig
from models.sim.simulator import Simulator


def _active(store: Path) -> CascadePolicy:
    bundle = bundle_path(store, "demo", active_version(store, "demo"))
    return load_checkpoint(bundle, read_manifest(bundle))


def _weights(policy: CascadePolicy) -> torch.Tensor:
    return reward_weights(policy.config.objectives, Simulator(SimConfig(), seed=0).business_weights)


def test_the_replay_serves_what_the_service_served(exploring_store: Path, logged: LoggedTransitions) -> None:
    policy = _active(exploring_store)
    assert logged.replay is not None
    assert logged.replay.items.shape[:2] == logged.replay.predictions.shape[:2] == (300, 100)

    predictions = survivor_predictions(policy, logged.state, logged.replay)

    # The torch replay of the logged raw actions ranks exactly what the ONNX cascade served.
    assert replay_agreement(policy, logged, predictions, _weights(policy)) == 1.0


def test_training_on_the_replay_raises_the_model_reward_within_the_trust_region(
    exploring_store: Path, logged: LoggedTransitions, one_torch_thread: None
) -> None:
    active, candidate = _active(exploring_store), _active(exploring_store)
    weights = _weights(active)
    std_before = candidate.fusion.log_std.detach().clone()

    report = train_on_replay(candidate, logged, weights, ReplayConfig(steps=60, kl_coef=0.03))

    assert report.replay_agreement == 1.0 and report.requests == 300
    assert 0.0 < report.kl < 1.0  # moved, but stays where the log explored
    assert torch.equal(candidate.fusion.log_std, std_before)  # the exploration is not trained away
    assert logged.replay is not None
    predictions = survivor_predictions(active, logged.state, logged.replay)
    noise = draws(64, len(logged), active.fusion.action_dim, seed=5)
    before = expected_replayed_reward(active, logged.state, predictions, weights, logged.replay.k, noise)
    after = expected_replayed_reward(candidate, logged.state, predictions, weights, logged.replay.k, noise)
    assert float(after.mean()) > float(before.mean())


def test_the_trainer_follows_the_recalibrated_reward_model(
    exploring_store: Path, logged: LoggedTransitions, one_torch_thread: None
) -> None:
    active = _active(exploring_store)
    weights = _weights(active)
    config = ReplayConfig(steps=40, kl_coef=0.03)
    objectives, state_dim = weights.shape[-1], logged.state.shape[1]
    identity = RewardCalibration.identity(objectives, state_dim)
    raw, calibrated = _active(exploring_store), _active(exploring_store)
    train_on_replay(raw, logged, weights, config)
    train_on_replay(calibrated, logged, weights, config, identity)
    # r̃ = r̂ under the identity: the same steps, the same actor.
    for a, b in zip(raw.fusion.parameters(), calibrated.fusion.parameters(), strict=True):
        assert torch.allclose(a, b)
    # A model that says every predicted reward is a loss (θ = −1): the trainer lowers r̂ instead of raising it.
    inverted = RewardCalibration(-identity.coef, identity.state_mean, identity.state_scale, 1.0, len(logged))
    contrary = _active(exploring_store)
    train_on_replay(contrary, logged, weights, config, inverted)
    assert logged.replay is not None
    predictions = survivor_predictions(active, logged.state, logged.replay)
    noise = draws(64, len(logged), active.fusion.action_dim, seed=5)
    k = logged.replay.k
    before = float(expected_replayed_reward(active, logged.state, predictions, weights, k, noise).mean())
    lowered = float(expected_replayed_reward(contrary, logged.state, predictions, weights, k, noise).mean())
    raised = float(expected_replayed_reward(raw, logged.state, predictions, weights, k, noise).mean())
    assert lowered < before < raised


def test_a_log_without_candidates_cannot_be_replayed(exploring_store: Path, logged: LoggedTransitions) -> None:
    bare = LoggedTransitions(**{**logged.__dict__, "replay": None})

    with pytest.raises(ValueError, match="CASCADE_LOG_CANDIDATE_FEATURES"):
        train_on_replay(_active(exploring_store), bare, _weights(_active(exploring_store)), ReplayConfig(steps=1))
