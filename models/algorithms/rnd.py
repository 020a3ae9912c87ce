"""Random Network Distillation (seed 001, "RND as Exploration").

A fixed, randomly initialised target f* and a trained predictor f on the fusion state s = user ⊕ context:

    min_θ ||f_θ(s) − f_θ*(s)||²₂            (predictor loss)
    novelty(s) = ||f_θ(s) − f_θ*(s)||²₂     (bonus; reward = r_e + novelty)

States seen often in training have a low bonus; unusual users have a high one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.nets.networks import mlp


class RND(nn.Module):
    def __init__(self, state_dim: int, out_dim: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.target = mlp([state_dim, hidden, out_dim])
        self.target.requires_grad_(False)  # f*: random and fixed for ever
        self.predictor = mlp([state_dim, hidden, hidden, out_dim])

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """novelty ||f(s) − f*(s)||² per state, [B]."""
        error: torch.Tensor = self.predictor(state) - self.target(state)
        return (error**2).sum(-1)


def train_rnd(
    rnd: RND, sample_states: Callable[[int], torch.Tensor], steps: int, batch: int = 256, lr: float = 3e-3
) -> list[float]:
    """Fit the predictor to the target on states from `sample_states(batch)`; returns the loss per step."""
    optimiser = torch.optim.Adam(rnd.predictor.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        loss = rnd(sample_states(batch)).mean()  # min_θ ||f_θ(s) − f_θ*(s)||²
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


class ExplorationWidener(nn.Module):
    """Per-state multiplier of the fusion actor's exploration noise: novel users explore more.

    scale(s) = clamp(novelty(s) / reference, 1, max_scale), `reference` the mean novelty of states the
    predictor was trained on. The service's bounds still hold: the noise stays clipped at the manifest's
    noise_clip before scaling is applied to at most max_scale, and the action is clipped to [low, high].
    """

    def __init__(self, rnd: RND, reference: float, max_scale: float = 2.0) -> None:
        super().__init__()
        self.rnd, self.reference, self.max_scale = rnd, reference, max_scale

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        novelty: torch.Tensor = self.rnd(state)
        return (novelty / self.reference).clamp(1.0, self.max_scale)


def novelty_bonus(rnd: RND, reference: float, weight: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Seed 001's "reward = r_e + ||f(s) − f*(s)||²", the novelty in units of its training mean × weight."""

    def bonus(state: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            novelty: torch.Tensor = rnd(state)
            return weight * novelty / reference

    return bonus
