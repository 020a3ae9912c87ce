"""Lagrangian A3C: the constrained problem of seed 001 solved by one policy on its Lagrangian.

    max_π U_1(π)  s.t.  U_i(π) ≥ C_i (i = 2..m)   →   L(π, λ) = U_1(π) + Σ_i λ_i·(U_i(π) − C_i),  λ_i ≥ 0

("The method is equal to learning a policy to optimize its Lagrangian", "Problem of Basic Version of RL").
The actor is A3C (one critic, γ) on r_1 + Σ_i λ_i·r_i; the multipliers follow projected dual ascent on
the batch's per-request constraint gap (RCPO-style): λ_i ← max(0, λ_i + η·(C_i − r̄_i)/C_i). The
baseline the two-stage method is compared with.
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
class LagrangianConfig:
    thresholds: dict[str, float]  # C_i: per-request business-weighted reward of each constrained objective
    main: str = "watch_time"
    run: RunConfig = field(default_factory=RunConfig)
    gamma: float = 0.95
    dual_lr: float = 0.05
    initial_lambda: float = 1.0


def train_lagrangian(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: LagrangianConfig
) -> TrainLog:
    run, objectives = config.run, list(sim.config.objectives)
    main = objectives.index(config.main)
    constrained = [objectives.index(name) for name in config.thresholds]
    thresholds = torch.tensor(list(config.thresholds.values()), dtype=torch.float32)
    lambdas = torch.full((len(constrained),), config.initial_lambda)
    critic = critic_net(policy.config.state_dim)
    actor_params = list(policy.fusion.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=run.actor_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=run.critic_lr)
    log, scale = TrainLog(), None
    for t in progress(transitions(policy, sim, rng, run), run, "lagrangian"):
        scale = scale or reward_scale(t.rewards)
        r = (t.rewards[:, main] + (t.rewards[:, constrained] * lambdas).sum(-1)) / scale  # r_1 + Σ λ_i·r_i
        advantage, critic_loss = td_advantage(critic, r, t.state, t.next_state, t.done, config.gamma)
        actor_loss = -(t.fusion.log_prob * advantage).mean()
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        norm = grad_norm(actor_params)
        actor_opt.step()
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        gap = (thresholds - t.rewards[:, constrained].mean(0)) / thresholds  # > 0: constraint violated
        lambdas = (lambdas + config.dual_lr * gap).clamp(min=0.0)  # projected dual ascent
        log.record(
            t,
            critic_loss.item(),
            norm,
            **{f"lambda_{objectives[j]}": float(v) for j, v in zip(constrained, lambdas, strict=True)},
        )
    return log
