"""Two-stage constrained actor-critic (seed 001, eqs. 8–10 and Algorithm 1).

Stage one: for each auxiliary (sparse) response i, an actor π_θi and critic V_φi trained by A3C on r_i
with its own discount γ_i (A_i = r_i + γ_i·V_φi(s') − V_φi(s), actor max A_i·log π_θ(a|s)).

Stage two: the main response (watch time) under soft constraints D_KL(π‖π_θi) ≤ ε_i (eq. 8), whose
optimum is (eq. 9)

    π*(a|s) ∝ Π_i π_θi(a|s)^{λ_i/Σ_j λ_j} · exp(A_1/Σ_j λ_j),

learned by minimising D_KL(π*‖π_θ) on data of the current policy π_θ1^(k) (eq. 10):

    max_θ E[ Π_i (π_θi(a|s)/π_θ1^(k)(a|s))^{λ_i/Σλ} · exp(A_1/Σλ) · log π_θ(a|s) ].

Numerics (ours, not the seed's): the weights are computed in log space, centred on their batch mean and
clipped to ±`max_log_weight` before exponentiating; a 10-dimensional Gaussian's density ratios span many
orders of magnitude, and an unclipped batch is decided by its one largest weight.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from models.algorithms.a3c import RewardFn, SessionA3CConfig, train_a3c
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
from models.nets.actors import FusionActor, gaussian_log_prob
from models.nets.cascade import CascadePolicy
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class TwoStageConfig:
    run: RunConfig = field(default_factory=RunConfig)
    main: str = "watch_time"
    # One auxiliary policy per group of responses (Algorithm 1: one per response).
    auxiliary: tuple[tuple[str, ...], ...] = (("like",), ("follow",), ("share",), ("comment",))
    auxiliary_steps: int = 200
    gamma_main: float = 0.95
    gamma_auxiliary: float = 0.5
    lambdas: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # λ_i, one per auxiliary policy
    max_log_weight: float = 5.0


def fusion_log_prob(actor: FusionActor, state: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """log π(raw | s) under `actor`'s Gaussian, [B]."""
    step = actor(state, torch.zeros_like(raw))
    return gaussian_log_prob(raw, step.mean, step.std)


def two_stage_log_weights(
    auxiliary_log_probs: torch.Tensor, behaviour_log_prob: torch.Tensor, advantage: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """log of eq. 10's weight: Σ_i (λ_i/Σλ)·(log π_θi(a|s) − log π_θ1^(k)(a|s)) + A_1/Σλ.

    auxiliary_log_probs [m, B], behaviour_log_prob [B], advantage [B], lambdas [m] → [B].
    """
    total = lambdas.sum()
    ratios = auxiliary_log_probs - behaviour_log_prob.unsqueeze(0)
    return ((lambdas / total).unsqueeze(-1) * ratios).sum(0) + advantage / total


def _group_reward(columns: list[int]) -> RewardFn:
    """Σ_{j∈group} r_j: the auxiliary group's reward, its objectives' columns summed."""

    def reward(t: Transition) -> torch.Tensor:
        return t.rewards[:, columns].sum(-1)

    return reward


def train_auxiliary(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: TwoStageConfig
) -> list[FusionActor]:
    """Stage one: one A3C fusion actor per auxiliary group, each on its own reward Σ_{j∈group} r_j."""
    objectives = list(sim.config.objectives)
    actors = []
    for group in config.auxiliary:
        columns = [objectives.index(name) for name in group]
        auxiliary = copy.deepcopy(policy)
        a3c = SessionA3CConfig(run=replace(config.run, steps=config.auxiliary_steps), gamma=config.gamma_auxiliary)
        train_a3c(auxiliary, sim, rng, a3c, reward_fn=_group_reward(columns))
        auxiliary.fusion.requires_grad_(False)
        actors.append(auxiliary.fusion)
    return actors


def train_two_stage(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: TwoStageConfig
) -> tuple[TrainLog, list[FusionActor]]:
    """Algorithm 1: stage one (auxiliary actors), then stage two on `policy.fusion`; returns the stage-two log."""
    if len(config.lambdas) != len(config.auxiliary):
        raise ValueError("one λ per auxiliary policy")
    auxiliary = train_auxiliary(policy, sim, rng, config)
    run, main = config.run, list(sim.config.objectives).index(config.main)
    lambdas = torch.tensor(config.lambdas)
    critic = critic_net(policy.config.state_dim)
    actor_params = list(policy.fusion.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=run.actor_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=run.critic_lr)
    log, scale = TrainLog(), None
    for t in progress(transitions(policy, sim, rng, run), run, "two-stage"):
        scale = scale or reward_scale(t.rewards)
        r = t.rewards[:, main] / scale
        advantage, critic_loss = td_advantage(critic, r, t.state, t.next_state, t.done, config.gamma_main)
        raw = t.fusion.raw.detach()
        with torch.no_grad():
            aux = torch.stack([fusion_log_prob(actor, t.state, raw) for actor in auxiliary])
            log_w = two_stage_log_weights(aux, t.fusion.log_prob.detach(), advantage, lambdas)
            log_w = (log_w - log_w.mean()).clamp(-config.max_log_weight, config.max_log_weight)
            weight = log_w.exp()
        actor_loss = -(weight * t.fusion.log_prob).mean()  # eq. 10
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        norm = grad_norm(actor_params)
        actor_opt.step()
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        log.record(t, critic_loss.item(), norm)
    return log, auxiliary
