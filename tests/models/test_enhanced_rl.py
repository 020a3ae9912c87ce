"""EnhancedRL on tiny fixed-seed runs: the configured critic ensemble shape, per-item actions in the box, and an
OOD penalty that grows off the distribution the critics were trained on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.algorithms.enhanced_rl import (
    CriticEnsemble,
    EnhancedActor,
    EnhancedRLConfig,
    ood_penalty,
    train_enhanced_rl,
)
from models.env.offline_data import OfflineConfig
from models.nets.cascade import PolicyConfig
from models.sim.simulator import Simulator

TINY = EnhancedRLConfig(offline=OfflineConfig(n_candidates=20), steps=15, sessions=4, batch=8, warmup=5, hidden=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _actor(pc: PolicyConfig) -> EnhancedActor:
    torch.manual_seed(0)
    return EnhancedActor(pc.state_dim, pc.item_dim, pc.n_objectives, pc.fusion_low, pc.fusion_high, TINY.hidden)


def test_critic_ensemble_has_q_sets_of_m_critics_each_with_its_own_weights() -> None:
    torch.manual_seed(0)
    critics = CriticEnsemble(in_dim=7, q_sets=2, m_critics=10, hidden=16)
    q = critics(torch.randn(5, 7))
    assert critics.shape == (2, 10)
    assert q.shape == (2, 10, 5)
    assert len(torch.unique(q[:, :, 0].flatten())) == 20  # 20 distinct critics, not one repeated


def test_actor_outputs_one_action_per_candidate_within_the_bounds() -> None:
    pc = PolicyConfig.from_sim(TINY.offline.sim)
    actor = _actor(pc)
    with torch.no_grad():
        last = actor.net.body[-1][-1]
        last.weight.normal_()  # away from the all-middle initialisation, so items differ
        actions = actor(
            torch.randn(3, pc.state_dim), torch.randn(3, 20, pc.item_dim), torch.rand(3, 20, pc.n_objectives)
        )
    assert actions.shape == (3, 20, 2 * pc.n_objectives)
    low, high = torch.tensor(pc.fusion_low), torch.tensor(pc.fusion_high)
    assert bool(((actions >= low) & (actions <= high)).all())
    assert not torch.allclose(actions[0, 0], actions[0, 1])  # per item, not per request


def test_training_runs_the_list_level_td_updates_on_the_simulator() -> None:
    pc = PolicyConfig.from_sim(TINY.offline.sim)
    actor = _actor(pc)
    before = [p.detach().clone() for p in actor.parameters()]
    critics, training = train_enhanced_rl(actor, Simulator(TINY.offline.sim, seed=0), np.random.default_rng(0), TINY)
    assert critics.shape == (TINY.q_sets, TINY.m_critics)
    assert len(training.critic_losses) == TINY.steps - TINY.warmup
    assert np.all(np.isfinite(training.critic_losses))
    assert all(0.5 <= s <= 2.0 for s in training.explore_scale)  # the personalised bounds' multiplier
    assert any(not torch.equal(a, b) for a, b in zip(before, actor.parameters(), strict=True))


def test_ood_penalty_grows_off_the_distribution_the_critics_were_trained_on() -> None:
    """Fit the ensemble to one function on inputs from N(0, 1); the penalty (std over the q·m critics) must
    then be smallest on that distribution and grow as inputs move away from it."""
    torch.manual_seed(0)
    critics = CriticEnsemble(in_dim=6, q_sets=2, m_critics=10, hidden=32)
    opt = torch.optim.Adam(critics.parameters(), lr=3e-3)
    for _ in range(150):
        x = torch.randn(128, 6)
        loss = ((critics(x) - x.sum(-1).sin()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(512, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        penalties = [float(ood_penalty(critics, x + shift).mean()) for shift in (0.0, 3.0, 8.0)]
    assert penalties[0] < penalties[1] < penalties[2], penalties
