"""Building blocks shared by the heads, actors, critics and RND networks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with `activation` between them (none after the last)."""
    if len(sizes) < 2:
        raise ValueError("an MLP needs an input and an output width")
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class PairMLP(nn.Module):
    """An MLP on [user ⊕ item] for every (user, candidate) pair, with the first layer split in two.

    W·[u ⊕ x] = W_u·u + W_x·x: the user half is computed once per request and broadcast over the N
    candidates instead of concatenating a copy of the user onto every candidate row. Broadcasting also
    keeps N dynamic in the exported graph (no `expand` to a traced size).
    """

    def __init__(self, user_dim: int, item_dim: int, hidden: Sequence[int], out_dim: int) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("PairMLP needs at least one hidden layer")
        self.user_in = nn.Linear(user_dim, hidden[0])
        self.item_in = nn.Linear(item_dim, hidden[0], bias=False)
        self.body = nn.Sequential(nn.ReLU(), mlp([*hidden, out_dim]))

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """user [B, U], items [B, N, I] → [B, N, out_dim]."""
        hidden = self.user_in(user).unsqueeze(1) + self.item_in(items)
        out: torch.Tensor = self.body(hidden)
        return out
