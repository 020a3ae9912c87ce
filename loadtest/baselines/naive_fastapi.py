"""The naive baseline: the service as a team would write it first.

FastAPI with pydantic request models (one model per candidate row), the torch modules for the
policy, `torch.tensor` from nested lists, a dict response through FastAPI's default JSON encoder.
Same policy weights and same cascade as the bundle cascade-serve runs; no decision log. It exists
only so `loadtest/bench` can measure what the fast path buys; it is not part of the product.

Run: BASELINE_CHECKPOINT=<file written by the bench> uvicorn loadtest.baselines.naive_fastapi:app
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from models.nets.cascade import CascadePolicy, PolicyConfig

CHECKPOINT_ENV = "BASELINE_CHECKPOINT"


def save_checkpoint(policy: CascadePolicy, stage_sizes: list[int], action_names: list[str], path: Path) -> None:
    """What the baseline needs to rebuild the exact policy the bundle was exported from."""
    config = {name: getattr(policy.config, name) for name in policy.config.__dataclass_fields__}
    torch.save(
        {"config": config, "state": policy.state_dict(), "stage_sizes": stage_sizes, "action_names": action_names},
        path,
    )


class User(BaseModel):
    id: str
    features: list[float]


class Candidates(BaseModel):
    ids: list[str]
    features: list[list[float]]
    predictions: list[list[float]]


class RankRequest(BaseModel):
    user: User
    candidates: Candidates
    k: int
    context: list[float] | None = None


def _load() -> tuple[CascadePolicy, list[int], list[str]]:
    saved = torch.load(os.environ[CHECKPOINT_ENV], weights_only=True)
    config = {key: tuple(value) if isinstance(value, list) else value for key, value in saved["config"].items()}
    policy = CascadePolicy(PolicyConfig(**config))
    policy.load_state_dict(saved["state"])
    policy.eval()
    return policy, saved["stage_sizes"], saved["action_names"]


torch.set_num_threads(1)  # one worker per core, like cascade-serve
app = FastAPI()
_policy, _stage_sizes, _action_names = _load() if CHECKPOINT_ENV in os.environ else (None, [], [])


@app.get("/readyz")
def readyz() -> dict[str, bool]:
    return {"ready": _policy is not None}


@app.post("/v1/rank")
def rank(request: RankRequest) -> dict[str, Any]:
    assert _policy is not None
    context = request.context or [0.0] * _policy.config.context_dim
    with torch.no_grad():
        outputs = _policy(
            torch.tensor([request.user.features]),
            torch.tensor([context]),
            torch.tensor(request.candidates.features),
            torch.tensor(request.candidates.predictions),
            torch.zeros((1, len(_action_names))),
            torch.tensor(_stage_sizes),
            torch.tensor([request.k]),
        )
    top_rows, top_scores = outputs[0].tolist(), outputs[1].tolist()
    return {
        "request_id": uuid.uuid4().hex,
        "items": [{"id": request.candidates.ids[r], "score": s} for r, s in zip(top_rows, top_scores, strict=True)],
        "fusion_weights": dict(zip(_action_names, outputs[8][0].tolist(), strict=True)),
    }
