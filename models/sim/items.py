"""The simulator's catalogue as an item table (export/item_table.py) and by-id rank requests.

A table row holds what the service cannot get from a by-id request: the item's features and an
MTL prediction for it. Real MTL predictions depend on the user; a table can only hold a prior,
here the average prediction over a sample of users and contexts. Clients that have per-user
predictions send them inline beside the ids (the features still come from the table).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contracts.item_table import ItemTableManifest, write_item_table
from models.sim.simulator import Simulator


def catalogue_rows(sim: Simulator, seed: int = 0, users: int = 64) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids, features [M, item_dim] and prior predictions [M, objectives] of every catalogue item."""
    rng = np.random.default_rng([seed, 7])
    n_items = sim.config.n_items
    items = np.arange(n_items, dtype=np.int64)[None, :]
    sampled = sim.sample_users(users, rng)
    contexts = sim.sample_contexts(users, rng)
    total = np.zeros((n_items, sim.config.n_objectives), dtype=np.float64)
    for user, context in zip(sampled, contexts, strict=True):
        total += sim.predictions(np.array([user]), items, context[None, :], rng)[0]
    predictions = (total / users).astype(np.float32)
    return sim.item_ids(items[0]), sim.item_features.astype(np.float32), predictions


def write_catalogue(store: Path, sim: Simulator, seed: int = 0, version: str | None = None) -> ItemTableManifest:
    """Write the simulator's catalogue into the store as the active item table."""
    ids, features, predictions = catalogue_rows(sim, seed)
    config = sim.config
    return write_item_table(
        store, ids, features, predictions, config.item_columns, list(config.objectives), version=version
    )


def by_id_request(sim: Simulator, rng: np.random.Generator, n_candidates: int = 1000, k: int = 10) -> dict[str, Any]:
    """A `POST /v1/rank` body naming its candidates by id only: a few KB instead of over a MB."""
    user = int(sim.sample_users(1, rng)[0])
    context = sim.sample_contexts(1, rng)
    items = sim.candidate_pools(1, n_candidates, rng)
    return {
        "user": {"id": sim.user_id(user), "features": sim.user_features[user].astype(np.float64).tolist()},
        "context": context[0].astype(np.float64).tolist(),
        "candidates": {"ids": sim.item_ids(items[0])},
        "k": k,
    }
