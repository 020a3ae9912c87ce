"""Supervised training of the three stages' prediction heads on simulated responses.

Targets: by default the simulator's expected responses E[y | u, i, c] (click probabilities, expected
watch minutes), otherwise sampled responses. Binary cross-entropy against p has the same expected
gradient as against Bernoulli(p) labels, and squared error against E[y] the same minimiser as against y;
the expectation just removes label noise, which matters for follows and shares at a 1% rate: with
sampled labels the sparse heads barely leave the base rate within the demo's few hundred steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from models.nets.cascade import CascadePolicy
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class HeadTraining:
    losses: list[float]  # summed training loss of the three heads, per step (no-skill units)
    held_out_before: float  # summed loss of the three heads on a fixed held-out batch, before training
    held_out_after: float


Targets = Literal["expected", "sampled"]


def response_batch(
    sim: Simulator, n_users: int, items_per_user: int, rng: np.random.Generator, targets: Targets = "expected"
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(state [B, S], items [B, M, I], each stage's targets [B, M, objectives]) for random users and items.

    The stages' targets are the same responses unless the world gives each stage a systematic error of its
    own (`Simulator.stage_targets`, SIMULATOR.md "v2.2"); sampled targets have none."""
    requests = sim.sample_requests(n_users, items_per_user, rng)
    if targets == "expected":
        responses = sim.expected_responses(requests.users, requests.candidates, requests.context)
        per_stage = [sim.stage_targets(stage, requests.candidates, responses) for stage in range(3)]
    else:
        responses = sim.respond(requests.users, requests.candidates, requests.context, rng).sampled
        per_stage = [responses] * 3
    columns = [requests.user_features, requests.context]
    if sim.config.session_features:
        # Session features (depth, satisfaction in [0, 1]) do not change a response: drawn at random so the
        # heads learn to ignore them, whatever the session looks like when they serve.
        columns.append(rng.uniform(0.0, 1.0, (n_users, len(sim.config.session_features))).astype(np.float32))
    state = np.concatenate(columns, axis=1)
    return (
        torch.from_numpy(state),
        torch.from_numpy(sim.item_features[requests.candidates]),
        [torch.from_numpy(y.astype(np.float32)) for y in per_stage],
    )


def heads_loss(
    policy: CascadePolicy,
    state: torch.Tensor,
    items: torch.Tensor,
    targets: list[torch.Tensor],
    weights: list[torch.Tensor],
) -> torch.Tensor:
    """Σ over the three heads of Σ_j weights_ij·loss_ij, head i against its stage's targets."""
    total = torch.zeros(())
    for i in range(len(policy.heads)):
        total = total + (policy.head(i).objective_losses(state, items, targets[i]) * weights[i]).sum()
    return total


def train_heads(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    *,
    steps: int,
    users_per_batch: int = 64,
    items_per_user: int = 16,
    lr: float = 1e-2,
    targets: Targets = "expected",
) -> HeadTraining:
    """Fit every stage's heads to fresh simulator responses each step (the simulator is an endless log).

    Each objective's loss is divided by its no-skill loss (that of predicting the mean of the stage's
    targets), so a 1%-rate objective, whose raw BCE is tiny, weighs as much as watch time; without it the
    sparse heads stay at their base rates for the first few hundred steps. Losses reported are in these
    units (1 = no skill).
    """
    held_out = response_batch(sim, 512, items_per_user, rng, targets)
    weights = [1.0 / policy.head(i).no_skill_losses(y).clamp(min=1e-6) for i, y in enumerate(held_out[2])]
    with torch.no_grad():
        before = float(heads_loss(policy, *held_out, weights))
    optimiser = torch.optim.Adam(policy.heads.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        loss = heads_loss(policy, *response_batch(sim, users_per_batch, items_per_user, rng, targets), weights)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward has no annotations
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        after = float(heads_loss(policy, *held_out, weights))
    return HeadTraining(losses=losses, held_out_before=before, held_out_after=after)
