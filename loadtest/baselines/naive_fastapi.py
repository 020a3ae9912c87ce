"""The naive baseline: the service as a team would write it first.

FastAPI with pydantic request models (one model per candidate row), the torch modules for the
policy, `torch.tensor` from nested lists, a dict response through FastAPI's default JSON encoder.
Same policy weights and same cascade as the bundle cascade-serve runs; no decision log. It exists
only so `loadtest/bench` can measure what the fast path buys; it is not part of the product. Its
exploration noise is drawn as cascade-serve draws it (seeded by PEER_EXPLORATION_SEED, the bundle's
exploration probability and clip), so the harness's correctness gate can compare its answers exactly.

Run: BASELINE_CHECKPOINT=<file written by the bench> uvicorn loadtest.baselines.naive_fastapi:app
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI
from pydantic import BaseModel

from models.nets.cascade import CascadePolicy, PolicyConfig

CHECKPOINT_ENV = "BASELINE_CHECKPOINT"
SEED_ENV = "PEER_EXPLORATION_SEED"  # as loadtest/peers/bundle.py


def save_checkpoint(
    policy: CascadePolicy,
    stage_sizes: list[int],
    action_names: list[str],
    path: Path,
    exploration: tuple[float, float] = (0.0, 1.0),
) -> None:
    """What the baseline needs to rebuild the exact policy the bundle was exported from (and its exploration:
    probability, noise clip)."""
    config = {name: getattr(policy.config, name) for name in policy.config.__dataclass_fields__}
    saved = {"config": config, "state": policy.state_dict(), "stage_sizes": stage_sizes, "action_names": action_names}
    torch.save({**saved, "exploration": list(exploration)}, path)


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


def _load() -> tuple[CascadePolicy, list[int], list[str], list[float]]:
    saved = torch.load(os.environ[CHECKPOINT_ENV], weights_only=True)
    config: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value for key, value in saved["config"].items()
    }
    policy = CascadePolicy(PolicyConfig(**config))
    policy.load_state_dict(saved["state"])
    policy.eval()
    return policy, saved["stage_sizes"], saved["action_names"], saved.get("exploration", [0.0, 1.0])


torch.set_num_threads(1)  # one worker per core, like cascade-serve
app = FastAPI()
_policy, _stage_sizes, _action_names, _exploration = _load() if CHECKPOINT_ENV in os.environ else (None, [], [], [])
_seed = os.environ.get(SEED_ENV)
_rng = np.random.default_rng(None if _seed is None else int(_seed))


def _noise() -> torch.Tensor:
    """cascade-serve's draw (service/exploration.py): explore?, then [1, A] normals clipped, or zeros."""
    probability, clip = _exploration
    explore = _rng.random() < probability
    draw = _rng.standard_normal((1, len(_action_names)), dtype=np.float32)
    return torch.from_numpy(np.clip(draw, -clip, clip) if explore else np.zeros_like(draw))


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
            _noise(),
            torch.tensor(_stage_sizes),
            torch.tensor([request.k]),
        )
    top_rows, top_scores = outputs[0].tolist(), outputs[1].tolist()
    return {
        "request_id": uuid.uuid4().hex,
        "items": [{"id": request.candidates.ids[r], "score": s} for r, s in zip(top_rows, top_scores, strict=True)],
        "fusion_weights": dict(zip(_action_names, outputs[8][0].tolist(), strict=True)),
    }
