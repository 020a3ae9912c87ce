"""ResAct on a small fixed-seed log: the CVAE learns to reconstruct, selection is the argmax of Q1 over the
draws, the same draws give the same action, and the BCQ-style variant keeps its decoder a pure reconstruction."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.algorithms.resact import ResActConfig, ResActPolicy, make_resact, reconstruction_error, train_resact
from models.env.offline_data import BehaviourPolicy, OfflineConfig, OfflineLog, collect
from models.experiments.resact_offline import layout_of
from models.nets.cascade import PolicyConfig
from models.sim.simulator import Simulator

SMALL = OfflineConfig(sessions=16, log_steps=20, n_candidates=20)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world() -> tuple[OfflineLog, BehaviourPolicy]:
    sim = Simulator(SMALL.sim, seed=0)
    behaviour = BehaviourPolicy.make(PolicyConfig.from_sim(SMALL.sim), SMALL, seed=0)
    return collect(sim, behaviour, SMALL, np.random.default_rng(0)), behaviour


def _policy(log: OfflineLog, behaviour: BehaviourPolicy, config: ResActConfig) -> ResActPolicy:
    torch.manual_seed(0)
    return make_resact(log.states.shape[1], behaviour.low, behaviour.high, layout_of(SMALL), config)


def test_the_log_records_the_behaviour_policys_propensities(world: tuple[OfflineLog, BehaviourPolicy]) -> None:
    log, behaviour = world
    assert len(log) == SMALL.sessions * SMALL.log_steps
    assert np.all(log.actions >= behaviour.low.numpy()) and np.all(log.actions <= behaviour.high.numpy())
    assert np.all(np.isfinite(log.log_probs))
    assert len(np.unique(log.session_ids)) > SMALL.sessions  # sessions ended and new ones started


@pytest.mark.parametrize("bcq", [False, True])
def test_cvae_reconstruction_improves_with_training(world: tuple[OfflineLog, BehaviourPolicy], bcq: bool) -> None:
    log, behaviour = world
    config = ResActConfig(steps=100, batch=32, hidden=32, bcq=bcq)
    policy = _policy(log, behaviour, config)
    before = reconstruction_error(policy, log, seed=1)

    training = train_resact(policy, log, config, seed=0)

    after = reconstruction_error(policy, log, seed=1)
    assert after < 0.8 * before, (before, after)  # ≈ −35% after 100 updates; an untrained decoder stays put
    assert len(training.critic_losses) == config.steps
    assert np.all(np.isfinite(training.critic_losses))


def test_selection_serves_the_candidate_with_the_highest_q1_and_replays_from_its_draws(
    world: tuple[OfflineLog, BehaviourPolicy],
) -> None:
    log, behaviour = world
    config = ResActConfig(steps=10, batch=32, hidden=32)
    policy = _policy(log, behaviour, config)
    train_resact(policy, log, config, seed=0)
    state = torch.from_numpy(log.states[:8]).float()
    latents = torch.randn(8, config.n_draws, config.latent_dim, generator=torch.Generator().manual_seed(3))

    with torch.no_grad():
        action, candidates, q = policy(state, latents)
        replayed, _, _ = policy(state, latents.clone())
        other, _, _ = policy(state, torch.randn(latents.shape, generator=torch.Generator().manual_seed(4)))

    assert candidates.shape == (8, config.n_draws, behaviour.low.numel())
    best = q.argmax(dim=1)
    torch.testing.assert_close(action, candidates[torch.arange(8), best])
    assert torch.equal(action, replayed)
    assert not torch.equal(action, other)  # the draws matter: they are what the service must log
    assert bool(((action >= behaviour.low) & (action <= behaviour.high)).all())


def test_residual_stays_within_its_bound_of_the_reconstruction(world: tuple[OfflineLog, BehaviourPolicy]) -> None:
    log, behaviour = world
    config = replace(ResActConfig(), residual_scale=0.05)
    policy = _policy(log, behaviour, config)
    state = torch.from_numpy(log.states[:16]).float()
    reconstructed = policy.cvae.decode(state, torch.randn(16, config.latent_dim))
    delta = policy.residual(state, reconstructed)
    assert bool((delta.abs() <= 0.05 * (behaviour.high - behaviour.low) + 1e-6).all())
