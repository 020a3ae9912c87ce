"""Running the cascade policy against the simulator: batches of requests, served items, request rewards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.nets.cascade import CascadePolicy, Selection, fused_scores, gather_rows, top_k
from models.sim.simulator import Requests, Simulator


@dataclass(frozen=True)
class RequestBatch:
    """B simulated requests as the tensors the policy takes (all with the same candidate count N)."""

    requests: Requests
    state: torch.Tensor  # [B, user_dim + context_dim]: user ⊕ context
    items: torch.Tensor  # [B, N, item_dim]
    predictions: torch.Tensor  # [B, N, objectives]: the upstream MTL model's predictions


def user_states(sim: Simulator, n: int, rng: np.random.Generator) -> torch.Tensor:
    """Fusion states user ⊕ context [n, S] of random users in random contexts (no candidates drawn)."""
    users = sim.sample_users(n, rng)
    return torch.from_numpy(np.concatenate([sim.user_features[users], sim.sample_contexts(n, rng)], axis=1))


def request_batch(sim: Simulator, n_requests: int, n_candidates: int, rng: np.random.Generator) -> RequestBatch:
    requests = sim.sample_requests(n_requests, n_candidates, rng)
    predictions = sim.predictions(requests.users, requests.candidates, requests.context, rng)
    state = np.concatenate([requests.user_features, requests.context], axis=1)
    return RequestBatch(
        requests=requests,
        state=torch.from_numpy(state),
        items=torch.from_numpy(sim.item_features[requests.candidates]),
        predictions=torch.from_numpy(predictions),
    )


def served_items(batch: RequestBatch, selection: Selection, fusion_action: torch.Tensor, k: torch.Tensor) -> np.ndarray:
    """Catalogue indices [B, k] of the items the fused score puts first among the ranking survivors."""
    predictions = gather_rows(batch.predictions, selection.rows)
    rows, _ = top_k(fused_scores(predictions, fusion_action), selection.rows, k)
    return np.take_along_axis(batch.requests.candidates, rows.numpy(), axis=1)


def expected_reward(sim: Simulator, batch: RequestBatch, items: np.ndarray) -> np.ndarray:
    """E[request reward] of serving items [B, k]: Σ_items Σ_j weight_j·E[y_j] per request."""
    requests = batch.requests
    return sim.reward(sim.expected_responses(requests.users, items, requests.context))


@torch.no_grad()
def evaluate_fusion(
    policy: CascadePolicy,
    sim: Simulator,
    *,
    n_requests: int,
    n_candidates: int,
    stage_sizes: tuple[int, int, int],
    k: int,
    seed: int,
) -> dict[str, float]:
    """Mean expected request reward of the served fusion mean against two baselines on the same requests.

    All three share the requests, MTL predictions and stage selections (common random numbers), so the
    differences are the fusion action's alone. Baselines: `uniform` (every w_j = 1, every b_j at the middle
    of its range) and `random` (an action drawn uniformly from the bounds per request).
    """
    rng = np.random.default_rng(seed)
    batch = request_batch(sim, n_requests, n_candidates, rng)
    sizes, k_t = torch.tensor(stage_sizes), torch.tensor([k])
    selection = policy.select(batch.state, batch.items, sizes, k_t)
    fusion = policy.fusion
    low, high = fusion.low.expand(n_requests, -1), fusion.high.expand(n_requests, -1)
    n_objectives = fusion.action_dim // 2
    uniform = torch.cat([torch.ones(n_objectives), 0.5 * (fusion.low + fusion.high)[n_objectives:]])
    actions = {
        "policy": fusion(batch.state, torch.zeros_like(low)).action,
        "uniform": uniform.expand(n_requests, -1),
        "random": low + (high - low) * torch.from_numpy(rng.random(low.shape, dtype=np.float32)),
    }
    return {
        name: float(expected_reward(sim, batch, served_items(batch, selection, action, k_t)).mean())
        for name, action in actions.items()
    }
