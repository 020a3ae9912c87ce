"""A3C for the request-level actors — seed 001. `train_actors`: γ = 0 on single requests (the demo);
`train_a3c`: the fusion actor on sessions with any γ (γ = 0 bandit vs γ = 0.95, the experiment table).

Seed 001, "Request-based MDP for RS", loss functions:

    actor loss   −log π(a|s) · (r + γ·V(s') − V(s))
    critic loss  (r + γ·V(s') − V(s))²

With γ = 0 ("Gamma=0: contextual bandits") the advantage is r − V(s). The state is user ⊕ context, the
reward is the request reward r = Σ_items Σ_j weight_j·y_j (seed 001's r_t, weights in SimConfig).

Which actors learn here: the fusion actor (Gaussian over w, b) and the three stage actors, which are
trained in the same loop as Gaussian policies over their pre-softplus logits and served at their mean.
The joint action of a request is (a_matching, a_pre_ranking, a_ranking, fusion action) and its log-
probability is the sum of the four; all share the one request reward and the one critic (a cooperative
multi-agent bandit, as UNEX-RL's stage actors share the system reward). The prediction heads are frozen.

Reward signal: by default the simulator's expected reward E[r | s, a] rather than a sampled one. Both give
the same expected policy gradient; the expectation removes the Bernoulli noise of rare events (a follow
is worth 40 minutes at a 1% rate), so the demo converges in seconds. `reward="sampled"` trains on
sampled responses, as a trainer reading real feedback would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from models.env.episodes import (
    RunConfig,
    TrainLog,
    Transition,
    critic_net,
    grad_norm,
    progress,
    reward_scale,
    td_advantage,
    transitions,
)
from models.env.rollout import RequestBatch, expected_reward, request_batch, served_items
from models.nets.cascade import CascadePolicy
from models.nets.networks import mlp
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class A3CConfig:
    steps: int = 300
    batch: int = 128  # requests per update
    n_candidates: int = 200  # smaller pools than serving: the stage sizes below scale with them
    stage_sizes: tuple[int, int, int] = (100, 75, 50)
    k: int = 10
    actor_lr: float = 3e-3
    critic_lr: float = 1e-2
    reward: Literal["expected", "sampled"] = "expected"


@dataclass(frozen=True)
class A3CTraining:
    rewards: list[float]  # mean request reward of each update's (exploring) batch
    critic_losses: list[float]


def _reward(sim: Simulator, batch: RequestBatch, items: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "expected":
        return expected_reward(sim, batch, items)
    requests = batch.requests
    return sim.reward(sim.respond(requests.users, items, requests.context, rng).sampled)


def train_actors(policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: A3CConfig) -> A3CTraining:
    """Train the fusion and stage actors with REINFORCE-with-baseline (A3C, γ = 0)."""
    critic = mlp([policy.config.state_dim, 64, 1])
    actors = [*policy.fusion.parameters(), *policy.stage_actors.parameters()]
    actor_opt = torch.optim.Adam(actors, lr=config.actor_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr)
    sizes, k = torch.tensor(config.stage_sizes), torch.tensor([config.k])
    n_objectives = policy.config.n_objectives
    policy.heads.requires_grad_(False)

    # Standardise rewards with the statistics of a first exploring batch so the critic and the learning
    # rates do not depend on the reward's units. A fixed affine map leaves the advantage's sign intact.
    scale: tuple[float, float] | None = None
    rewards: list[float] = []
    critic_losses: list[float] = []
    for _ in range(config.steps):
        batch = request_batch(sim, config.batch, config.n_candidates, rng)
        stage_noise = torch.from_numpy(rng.standard_normal((config.batch, 3, n_objectives), dtype=np.float32))
        fusion_noise = torch.from_numpy(rng.standard_normal((config.batch, policy.fusion.action_dim), dtype=np.float32))
        selection = policy.select(batch.state, batch.items, sizes, k, stage_noise)
        fusion = policy.fusion(batch.state, fusion_noise)
        with torch.no_grad():
            items = served_items(batch, selection, fusion.action, k)
        r = _reward(sim, batch, items, config.reward, rng)
        if scale is None:
            scale = (float(r.mean()), float(r.std()) + 1e-8)
        r_t = torch.from_numpy(((r - scale[0]) / scale[1]).astype(np.float32))

        value = critic(batch.state).squeeze(-1)
        advantage = (r_t - value).detach()  # r + γ·V(s') − V(s) with γ = 0
        log_prob = fusion.log_prob + selection.log_prob  # log π(a|s) of the joint action
        actor_loss = -(log_prob * advantage).mean()  # −log π(a|s)·(r + γV(s') − V(s))
        critic_loss = ((r_t - value) ** 2).mean()  # (r + γV(s') − V(s))²

        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        rewards.append(float(r.mean()))
        critic_losses.append(critic_loss.item())
    policy.heads.requires_grad_(True)
    return A3CTraining(rewards=rewards, critic_losses=critic_losses)


# ------------------------------------------------------------------------------ sessions, γ ≥ 0


@dataclass(frozen=True)
class SessionA3CConfig:
    """A3C of the fusion actor on sessions: γ = 0 is the contextual bandit, γ = 0.95 the RL of seed 001."""

    run: RunConfig = field(default_factory=RunConfig)
    gamma: float = 0.95


RewardFn = Callable[[Transition], torch.Tensor]


def train_a3c(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    config: SessionA3CConfig,
    *,
    reward_fn: RewardFn | None = None,
    bonus: Callable[[torch.Tensor], torch.Tensor] | None = None,
    widen: nn.Module | None = None,
    critic: nn.Module | None = None,
) -> TrainLog:
    """Train the fusion actor on the weighted request reward with one critic (seed 001's A3C losses).

    `reward_fn(t)` replaces the observed total reward (SRS), `bonus(s)` is added to it (RND: r_e + novelty)
    and `widen` widens the exploration noise of novel states (RND); all are in reward-scale units.
    """
    run = config.run
    critic = critic or critic_net(policy.config.state_dim)
    actor_params = list(policy.fusion.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=run.actor_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=run.critic_lr)
    log, scale = TrainLog(), None
    stream = transitions(policy, sim, rng, run, widen=widen)
    for t in progress(stream, run, f"a3c γ={config.gamma}"):
        reward = t.rewards.sum(-1) if reward_fn is None else reward_fn(t)
        scale = scale or reward_scale(t.rewards)
        r = reward / scale
        if bonus is not None:
            r = r + bonus(t.state)
        advantage, critic_loss = td_advantage(critic, r, t.state, t.next_state, t.done, config.gamma)
        actor_loss = -(t.fusion.log_prob * advantage).mean()  # −log π(a|s)·(r + γV(s') − V(s))
        if t.fusion.mean.requires_grad:
            t.fusion.mean.retain_grad()  # what reaches the action itself, before the actor's network
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        norm = grad_norm(actor_params)
        actor_opt.step()
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]  # (r + γV(s') − V(s))²
        critic_opt.step()
        action_grad = t.fusion.mean.grad
        per_dim = action_grad.sum(0).tolist() if action_grad is not None else []
        log.record(
            t,
            critic_loss.item(),
            norm,
            signal_std=float(r.std()),
            advantage_std=float(advantage.std()),
            **{f"action_grad_{j}": g for j, g in enumerate(per_dim)},
        )
    return log
