"""Pieces the offline actor-critics share (ResAct, BCQ-style, TD3+BC): twin Q critics, soft target updates,
and minibatches of logged transitions as tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.env.offline_data import OfflineLog
from models.nets.networks import mlp


class TwinCritic(nn.Module):
    """Q1, Q2 (s, a) → two [B] values (TD3's clipped double-Q)."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.q1 = mlp([state_dim + action_dim, hidden, hidden, 1])
        self.q2 = mlp([state_dim + action_dim, hidden, hidden, 1])

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def first(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1: torch.Tensor = self.q1(torch.cat([state, action], dim=-1))
        return q1.squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← τ·θ + (1 − τ)·θ'."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.mul_(1.0 - tau).add_(tau * s)


@dataclass(frozen=True)
class Minibatch:
    state: torch.Tensor
    action: torch.Tensor  # the served (clipped) action
    reward: torch.Tensor  # divided by the log's reward std
    next_state: torch.Tensor
    done: torch.Tensor


class TransitionSampler:
    """Uniform minibatches of a log (tensors built once)."""

    def __init__(self, log: OfflineLog, seed: int) -> None:
        self.state = torch.from_numpy(log.states).float()
        self.action = torch.from_numpy(log.actions).float()
        self.reward_scale = float(log.rewards.std()) + 1e-8
        self.reward = torch.from_numpy(log.rewards / self.reward_scale).float()
        self.next_state = torch.from_numpy(log.next_states).float()
        self.done = torch.from_numpy(log.done).float()
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, size: int) -> Minibatch:
        idx = torch.randint(0, self.state.shape[0], (size,), generator=self.gen)
        return Minibatch(self.state[idx], self.action[idx], self.reward[idx], self.next_state[idx], self.done[idx])


def critic_loss(critic: TwinCritic, minibatch: Minibatch, target: torch.Tensor) -> torch.Tensor:
    q1: torch.Tensor
    q2: torch.Tensor
    q1, q2 = critic(minibatch.state, minibatch.action)
    return ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
