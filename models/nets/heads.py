"""Per-stage multi-task prediction heads h_i(user, item) → R^objectives (UNEX-RL selection functions).

Each stage of the cascade scores its candidates with its own heads: matching with a cheap two-tower
model (one dot product per objective, the item tower could be precomputed offline), pre-ranking with a
small MLP on [user ⊕ item], ranking with a larger one. All heads output predictions on the simulator's
scale: probabilities for sparse objectives, expected minutes for dense ones (max_watch_time·σ).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from models.nets.networks import PairMLP, mlp


class PredictionHead(nn.Module):
    """Common link: logits → predictions, and the supervised loss against simulator responses."""

    dense: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dense_mask: Sequence[bool], max_watch_time: float) -> None:
        super().__init__()
        dense = torch.tensor(list(dense_mask), dtype=torch.bool)
        self.register_buffer("dense", dense)
        # Dense predictions are max_watch_time·σ(logit), sparse ones σ(logit): the simulator's own links.
        self.register_buffer("scale", torch.where(dense, max_watch_time, 1.0).to(torch.float32))

    def logits(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user state [B, U], items [B, N, I] → logits [B, N, objectives]."""
        raise NotImplementedError

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(user, items)) * self.scale

    def objective_losses(self, user: torch.Tensor, items: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Per-objective loss [objectives]: BCE for sparse ones, squared error (in max units) for dense."""
        logits = self.logits(user, items)
        bce = functional.binary_cross_entropy_with_logits(logits, responses.clamp(0.0, 1.0), reduction="none")
        squared = (torch.sigmoid(logits) - responses / self.scale) ** 2
        return torch.where(self.dense, squared, bce).mean(dim=(0, 1))

    def no_skill_losses(self, responses: torch.Tensor) -> torch.Tensor:
        """Per-objective loss of the constant predictor at the batch mean: entropy H(p̄) or variance."""
        mean = (responses / self.scale).mean(dim=(0, 1)).clamp(1e-6, 1 - 1e-6)
        entropy = -(mean * torch.log(mean) + (1 - mean) * torch.log1p(-mean))
        variance = (responses / self.scale).var(dim=(0, 1))
        return torch.where(self.dense, variance, entropy)


class TwoTowerHead(PredictionHead):
    """Matching: logit_j = ⟨u_j, v_j⟩ + c_j with per-objective user and item embeddings."""

    blocks: torch.Tensor

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        dense_mask: Sequence[bool],
        max_watch_time: float,
        embedding_dim: int = 8,
        hidden: int = 32,
    ) -> None:
        super().__init__(dense_mask, max_watch_time)
        n_objectives = len(dense_mask)
        self.user_tower = mlp([user_dim, hidden, n_objectives * embedding_dim])
        self.item_tower = mlp([item_dim, hidden, n_objectives * embedding_dim])
        self.bias = nn.Parameter(torch.zeros(n_objectives))
        # [J·E, J] block indicator: (u ⊙ v) @ blocks sums each objective's E products. Reshaping v to
        # [B, N, J, E] instead would make the exporter infer a fixed N and fold the stage's TopK k into a
        # constant (DESIGN.md "Known traps"); a matmul keeps the candidate axis untouched.
        self.register_buffer("blocks", torch.eye(n_objectives).repeat_interleave(embedding_dim, dim=0))

    def logits(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u: torch.Tensor = self.user_tower(user).unsqueeze(1)  # [B, 1, J·E]
        v: torch.Tensor = self.item_tower(items)  # [B, N, J·E]
        return (u * v) @ self.blocks + self.bias


class MLPHead(PredictionHead):
    """Pre-ranking and ranking: an MLP on [user ⊕ item] with one logit per objective."""

    def __init__(
        self,
        user_dim: int,
        item_dim: int,
        dense_mask: Sequence[bool],
        max_watch_time: float,
        hidden: Sequence[int] = (32,),
    ) -> None:
        super().__init__(dense_mask, max_watch_time)
        self.net = PairMLP(user_dim, item_dim, hidden, len(dense_mask))

    def logits(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(user, items)
        return out
