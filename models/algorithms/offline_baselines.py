"""The offline baselines ResAct is compared with (seed 004, Tables 2-3): behaviour cloning (IL) and TD3+BC.
The BCQ-style baseline is models/algorithms/resact.py with `bcq=True` (it shares the CVAE + perturbation design)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from models.env.offline_data import OfflineLog
from models.nets.networks import mlp
from models.nets.twin_critic import TransitionSampler, TwinCritic, critic_loss, soft_update


class DeterministicActor(nn.Module):
    """a = low + range·σ(MLP(s)): always inside the action box."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, state_dim: int, low: torch.Tensor, high: torch.Tensor, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("low", low.clone())
        self.register_buffer("high", high.clone())
        self.net = mlp([state_dim, hidden, hidden, low.numel()])

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.net(state))


@dataclass(frozen=True)
class BaselineConfig:
    steps: int = 3000
    batch: int = 256
    hidden: int = 64
    lr: float = 1e-3
    gamma: float = 0.9
    tau: float = 0.005
    policy_delay: int = 2
    target_noise: float = 0.05  # fraction of the range
    alpha: float = 2.5  # TD3+BC: λ = α / mean|Q|


def _scaled_mse(actor: DeterministicActor, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    predicted: torch.Tensor = actor(state)
    return (((predicted - action) / (actor.high - actor.low)) ** 2).sum(-1).mean()


def train_bc(actor: DeterministicActor, log: OfflineLog, config: BaselineConfig, seed: int) -> list[float]:
    """Behaviour cloning (the paper's IL): regress the logged action on the state."""
    torch.manual_seed(seed)
    sampler = TransitionSampler(log, seed)
    opt = torch.optim.Adam(actor.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.steps):
        mb = sampler.sample(config.batch)
        loss = _scaled_mse(actor, mb.state, mb.action)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def train_td3_bc(actor: DeterministicActor, log: OfflineLog, config: BaselineConfig, seed: int) -> list[float]:
    """TD3+BC (Fujimoto & Gu 2021): actor loss −λ·Q1(s, π(s)) + (π(s) − a)², λ = α / mean|Q1|."""
    torch.manual_seed(seed)
    sampler = TransitionSampler(log, seed)
    critic = TwinCritic(log.states.shape[1], log.actions.shape[1], config.hidden)
    actor_t, critic_t = copy.deepcopy(actor), copy.deepcopy(critic)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=config.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.lr)
    span = actor.high - actor.low
    losses = []
    for step in range(config.steps):
        mb = sampler.sample(config.batch)
        with torch.no_grad():
            noise = (torch.randn_like(mb.action) * config.target_noise).clamp(
                -2 * config.target_noise, 2 * config.target_noise
            )
            next_action = torch.minimum(torch.maximum(actor_t(mb.next_state) + noise * span, actor.low), actor.high)
            q1, q2 = critic_t(mb.next_state, next_action)
            y = mb.reward + config.gamma * (1.0 - mb.done) * torch.minimum(q1, q2)
        loss = critic_loss(critic, mb, y)
        critic_opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        losses.append(float(loss.detach()))
        if step % config.policy_delay == 0:
            q = critic.first(mb.state, actor(mb.state))
            lam = config.alpha / q.abs().mean().detach()
            actor_loss = -lam * q.mean() + _scaled_mse(actor, mb.state, mb.action)
            actor_opt.zero_grad()
            actor_loss.backward()  # type: ignore[no-untyped-call]
            actor_opt.step()
            soft_update(actor_t, actor, config.tau)
            soft_update(critic_t, critic, config.tau)
    return losses
