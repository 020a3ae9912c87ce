"""The actors the cascade graph serves: one per stage (UNEX-RL) and the fusion-weight actor (Kuaishou).

Both are Gaussian policies during training. A stage actor samples pre-activation logits and is served
at its mean, softplus(μ(o)) (non-negative head weights). The fusion actor is served as the Gaussian
itself: the service draws the exploration noise and logs log π(raw | s), the propensity that
off-policy evaluation needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional

from models.nets.networks import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Σ over the last axis of log N(x; mean, std²) — a diagonal Gaussian's log density."""
    z = (x - mean) / std
    return (-0.5 * z * z - torch.log(std) - _HALF_LOG_2PI).sum(-1)


class StageActor(nn.Module):
    """π_i(a | o_i): a Gaussian over logits whose softplus weights stage i's prediction heads."""

    def __init__(self, obs_dim: int, n_objectives: int, hidden: int = 32, init_std: float = 0.5) -> None:
        super().__init__()
        self.net = mlp([obs_dim, hidden, n_objectives])
        self.log_std = nn.Parameter(torch.full((n_objectives,), math.log(init_std)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The served (mean) action softplus(μ(o)) ≥ 0, [B, objectives]."""
        return functional.softplus(self.net(obs))

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exploring action softplus(μ + σ·ε) and log π of its logits (the sample itself is a constant)."""
        mean = self.net(obs)
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().expand_as(mean)
        logits = (mean + std * noise).detach()
        return functional.softplus(logits), gaussian_log_prob(logits, mean, std)


class FusionStep(NamedTuple):
    mean: torch.Tensor  # [B, A]
    std: torch.Tensor  # [B, A]
    raw: torch.Tensor  # [B, A] mean + std·noise
    action: torch.Tensor  # [B, A] raw clipped to [low, high]
    log_prob: torch.Tensor  # [B] log π(raw | s)


class FusionActor(nn.Module):
    """Request-level fusion actor (seed 001: "input state, output mu and sigma, sample from Gaussian").

    The action is (w_1..w_J, b_1..b_J) for the fused score Σ_j w_j·log(p_j + b_j). The mean is squashed
    into [low, high] by a scaled sigmoid so the served mean is always a valid action; the std is a learned
    state-independent log-std, initialised to `init_std_fraction` of each action's range.

    `powers = J > 0` makes the mean's first J entries scale-free: w = (Σ_j mid_j)·softmax(z) (clipped to
    the box), so Σ_j w_j is the same for every state. Why: the fused score ranks the same when every w_j
    is multiplied by one constant, so the return has no gradient along that direction; a sigmoid mean
    random-walks along it under the policy-gradient noise until the powers saturate at the box edges,
    where the sigmoid passes no gradient (measured in simulator v2: shares of 1/3, 1/3, 1/3, 0, 0 after
    600 updates). The softmax's Jacobian maps that direction to zero, so its noise never reaches z.
    """

    low: torch.Tensor
    high: torch.Tensor

    def __init__(
        self,
        state_dim: int,
        low: Sequence[float],
        high: Sequence[float],
        hidden: int = 64,
        init_std_fraction: float = 0.2,
        powers: int = 0,
    ) -> None:
        super().__init__()
        low_t = torch.tensor(list(low), dtype=torch.float32)
        high_t = torch.tensor(list(high), dtype=torch.float32)
        if low_t.shape != high_t.shape or bool((low_t > high_t).any()):
            raise ValueError("fusion bounds need low <= high, one pair per action")
        self.register_buffer("low", low_t)
        self.register_buffer("high", high_t)
        if not 0 <= powers <= low_t.numel():
            raise ValueError("powers must be between 0 and the action size")
        self.powers = powers
        self.net = mlp([state_dim, hidden, hidden, low_t.numel()])
        # Start at the middle of the box: a zero last layer gives σ(0) = ½ for every state.
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.log_std = nn.Parameter(torch.log(init_std_fraction * (high_t - low_t)).clamp(LOG_STD_MIN, LOG_STD_MAX))

    @property
    def action_dim(self) -> int:
        return int(self.low.numel())

    def mean_logit(self, action: torch.Tensor) -> torch.Tensor:
        """The network output whose scaled sigmoid is `action` [..., A] (clamped inside the box): what a
        last layer must emit to serve a written action (a constant, a per-segment table)."""
        position = ((action - self.low) / (self.high - self.low)).clamp(1e-4, 1 - 1e-4)
        return torch.log(position / (1 - position))

    def forward(self, state: torch.Tensor, noise: torch.Tensor) -> FusionStep:
        """state [B, S], standard-normal noise [B, A] → the Gaussian, the raw draw and the clipped action."""
        out = self.net(state)
        mean = self.low + (self.high - self.low) * torch.sigmoid(out)
        if self.powers:
            j = self.powers
            total = 0.5 * (self.low[:j] + self.high[:j]).sum()
            w = torch.minimum(torch.maximum(total * torch.softmax(out[..., :j], -1), self.low[:j]), self.high[:j])
            mean = torch.cat([w, mean[..., j:]], -1)
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().expand_as(mean)
        raw = mean + std * noise
        # log π is of the raw (unclipped) draw: the density the logged propensity refers to. The draw is a
        # constant for the policy gradient (REINFORCE differentiates log π, not the sample).
        log_prob = gaussian_log_prob(raw.detach(), mean, std)
        action = torch.minimum(torch.maximum(raw, self.low), self.high)
        return FusionStep(mean, std, raw, action, log_prob)
