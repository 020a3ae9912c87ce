"""Multi-critic policy optimisation (seed 001, "Multi-Critic Policy Optimization"; RCPO-A3C in its table).

One critic V_j per objective j, each with its own discount γ_j ("for watch time 0.95, for interactions
small factors"), each fitted with the A3C critic loss on its own reward r_j:

    Adv_j(s, a) = r_j + γ_j·V_j(s') − V_j(s),    critic_j loss Adv_j²
    actor:  max_θ log π_θ(a|s)·(Adv_time + λ_1·Adv_follow + λ_2·Adv_forward + …)

r_j is already business-weighted (SimConfig.business_weights), so λ_j = 1 reproduces the single critic's
reward when every γ_j is equal; the experiment compares it with the single critic at γ = 0.95.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.env.episodes import (
    RunConfig,
    TrainLog,
    critic_net,
    grad_norm,
    progress,
    reward_scale,
    td_advantage,
    transitions,
)
from models.nets.cascade import CascadePolicy
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class MultiCriticConfig:
    run: RunConfig = field(default_factory=RunConfig)
    gammas: tuple[float, ...] = (0.95, 0.5, 0.5, 0.5, 0.5)  # per objective, SimConfig.objectives order
    lambdas: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)  # weight of each advantage in the actor loss


def train_multi_critic(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: MultiCriticConfig
) -> TrainLog:
    run = config.run
    n = policy.config.n_objectives
    if len(config.gammas) != n or len(config.lambdas) != n:
        raise ValueError("one discount and one advantage weight per objective")
    critics = [critic_net(policy.config.state_dim) for _ in range(n)]
    actor_params = list(policy.fusion.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=run.actor_lr)
    critic_opt = torch.optim.Adam([p for c in critics for p in c.parameters()], lr=run.critic_lr)
    lambdas = torch.tensor(config.lambdas)
    log, scale = TrainLog(), None
    for t in progress(transitions(policy, sim, rng, run), run, "multi-critic"):
        scale = scale or reward_scale(t.rewards)
        r = t.rewards / scale  # [B, J]
        advantages, losses = zip(
            *(
                td_advantage(critic, r[:, j], t.state, t.next_state, t.done, gamma)
                for j, (critic, gamma) in enumerate(zip(critics, config.gammas, strict=True))
            ),
            strict=True,
        )
        advantage = (torch.stack(advantages, -1) * lambdas).sum(-1)  # Adv_time + Σ λ_j·Adv_j
        actor_loss = -(t.fusion.log_prob * advantage).mean()
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        norm = grad_norm(actor_params)
        actor_opt.step()
        critic_loss = torch.stack(losses).sum()
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        log.record(t, critic_loss.item(), norm)
    return log
