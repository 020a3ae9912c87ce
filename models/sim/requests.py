"""Simulated `POST /v1/rank` bodies (the service's HTTP contract) and the feedback a simulated user gives.

Used by the tests, the Locust users and the README's curl example. Floats are plain Python floats
rounded to 5 decimals: JSON stays about half the size and float32 precision is not lost in a way the
policy could notice.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from models.sim.simulator import Simulator

DECIMALS = 5


def _floats(values: np.ndarray) -> Any:
    return np.round(values.astype(np.float64), DECIMALS).tolist()


def user_index(sim: Simulator, user_id: str) -> int:
    """Population row of a user id: "u<i>" is user i; any other string maps to a stable row by crc32."""
    n_users = sim.config.n_users
    if user_id.startswith("u") and user_id[1:].isdigit() and int(user_id[1:]) < n_users:
        return int(user_id[1:])
    return zlib.crc32(user_id.encode()) % n_users


def rank_request(
    sim: Simulator,
    rng: np.random.Generator,
    n_candidates: int = 1000,
    k: int = 10,
    user_id: str | None = None,
) -> dict[str, Any]:
    """One JSON body for `POST /v1/rank` with inline candidate features and MTL predictions.

    Shape: {"user": {"id", "features": [user_dim]}, "context": [context_dim],
    "candidates": {"ids": [N], "features": [N][item_dim], "predictions": [N][objectives]}, "k": k}.
    """
    if user_id is None:
        user = int(sim.sample_users(1, rng)[0])
        user_id = sim.user_id(user)
    else:
        user = user_index(sim, user_id)
    users = np.array([user])
    context = sim.sample_contexts(1, rng)
    items = sim.candidate_pools(1, n_candidates, rng)
    predictions = sim.predictions(users, items, context, rng)[0]
    return {
        "user": {"id": user_id, "features": _floats(sim.user_features[user])},
        "context": _floats(context[0]),
        "candidates": {
            "ids": sim.item_ids(items[0]),
            "features": _floats(sim.item_features[items[0]]),
            "predictions": _floats(predictions),
        },
        "k": k,
    }


def served_responses(
    sim: Simulator, body: dict[str, Any], served_ids: list[str], rng: np.random.Generator
) -> list[dict[str, float]]:
    """Sampled responses of the request's user to the served items, one {objective: value} per item.

    The user and context are read back from the body, so a Locust user can send realistic feedback
    for whatever the service chose to serve.
    """
    user = np.array([user_index(sim, body["user"]["id"])])
    context = np.asarray([body["context"]], dtype=np.float32)
    items = np.array([[int(item_id[1:]) for item_id in served_ids]], dtype=np.int64)
    sampled = sim.respond(user, items, context, rng).sampled[0]
    return [dict(zip(sim.config.objectives, map(float, row), strict=True)) for row in sampled]


def expected_request_reward(sim: Simulator, body: dict[str, Any], served_ids: list[str]) -> float:
    """E[request reward] of serving these items to the body's user in its context: the true return the
    loop reports (the simulator knows it; the service and the trainer only see sampled feedback)."""
    user = np.array([user_index(sim, body["user"]["id"])])
    context = np.asarray([body["context"]], dtype=np.float32)
    items = np.array([[int(item_id[1:]) for item_id in served_ids]], dtype=np.int64)
    return float(sim.reward(sim.expected_responses(user, items, context))[0])


def write_example_request(
    path: Path,
    seed: int = 0,
    n_candidates: int = 1000,
    k: int = 10,
    sim: Simulator | None = None,
    by_id: bool = False,
) -> Path:
    """Write one rank body as JSON to `path` (parents created): inline rows, or ids only with `by_id`."""
    from models.sim.items import by_id_request

    sim = sim or Simulator(seed=seed)
    make = by_id_request if by_id else rank_request
    body = make(sim, np.random.default_rng(seed), n_candidates=n_candidates, k=k)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path
