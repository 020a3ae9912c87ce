"""The store's active bundle as a peer server loads it: json + numpy + onnxruntime, nothing of cascade-serve.

The on-disk layout is the published one (DESIGN.md, "Model bundle" and the item table): `<store>/<policy>/ACTIVE`
names a version, `<store>/<policy>/<version>/manifest.json` names the cascade graph, the stage sizes and the
exploration settings; `<store>/_items/ACTIVE` names the item table (ids.json, features.npy, predictions.npy).
The exploration noise is drawn exactly as cascade-serve draws it (one generator per process, seeded by
`exploration_seed`; per request one uniform for "explore?", then one [1, A] standard-normal draw clipped to
±noise_clip, zeros when the request exploits), so with the same seed and the same request order every server
serves the same fusion noise, and the harness's correctness gate can compare answers exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort

SEED_ENV = "PEER_EXPLORATION_SEED"  # the peers' counterpart of CASCADE_EXPLORATION_SEED
STORE_ENV = "PEER_STORE"
POLICY_ENV = "PEER_POLICY"
OUTPUTS = ["top_indices", "top_scores", "fusion_action"]


@dataclass
class PeerBundle:
    """One policy version and the item table, ready to rank."""

    session: ort.InferenceSession
    stage_sizes: np.ndarray  # int64 [3]
    action_names: list[str]
    probability: float  # share of requests that explore
    noise_clip: float
    user_dim: int
    context_dim: int
    ids: list[str]
    rows: dict[str, int]  # item id → row of features / predictions
    features: np.ndarray  # float32 [M, item_dim]
    predictions: np.ndarray  # float32 [M, objectives]
    rng: np.random.Generator

    def noise(self) -> np.ndarray:
        """This request's [1, A] fusion noise (see the module docstring: the same draws as cascade-serve)."""
        explore = self.rng.random() < self.probability
        draw = self.rng.standard_normal((1, len(self.action_names)), dtype=np.float32)
        if not explore:
            return np.zeros_like(draw)
        return np.clip(draw, -self.noise_clip, self.noise_clip)

    def inputs(self, body: dict[str, Any]) -> RankInputs:
        """A decoded rank body (ids only, inline rows, or msgpack tensors) as the graph's arrays."""
        candidates = body["candidates"]
        ids = candidates["ids"]
        if "features" in candidates:
            features, predictions = matrix(candidates["features"]), matrix(candidates["predictions"])
        else:  # by id: one dict probe per id, then one gather per matrix
            index = np.fromiter(map(self.rows.__getitem__, ids), dtype=np.intp, count=len(ids))
            features, predictions = np.take(self.features, index, axis=0), np.take(self.predictions, index, axis=0)
        user = np.asarray([body["user"]["features"]], dtype=np.float32)
        context = np.asarray([body.get("context") or [0.0] * self.context_dim], dtype=np.float32)
        return RankInputs(ids, user, context, features, predictions, int(body["k"]))

    def run(self, inputs: RankInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One cascade graph call with this request's noise: (top rows, top scores, fusion action [1, A])."""
        feeds = {
            "user": inputs.user,
            "context": inputs.context,
            "item_features": inputs.features,
            "mtl_predictions": inputs.predictions,
            "fusion_noise": self.noise(),
            "stage_sizes": self.stage_sizes,
            "k": np.asarray([inputs.k], dtype=np.int64),
        }
        top, scores, action = self.session.run(OUTPUTS, feeds)
        return top, scores, action

    def answer(self, ids: list[str], outputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
        """The answer every peer sends: the top-k ids with scores and the fusion weights served."""
        top, scores, action = outputs
        return {
            "items": [{"id": ids[r], "score": s} for r, s in zip(top.tolist(), scores.tolist(), strict=True)],
            "fusion_weights": dict(zip(self.action_names, action[0].tolist(), strict=True)),
        }

    def rank(self, body: dict[str, Any]) -> dict[str, Any]:
        """decode → run → encode for one decoded body."""
        inputs = self.inputs(body)
        return self.answer(inputs.ids, self.run(inputs))


@dataclass(frozen=True)
class RankInputs:
    ids: list[str]
    user: np.ndarray  # float32 [1, user_dim]
    context: np.ndarray  # float32 [1, context_dim]
    features: np.ndarray  # float32 [N, item_dim]
    predictions: np.ndarray  # float32 [N, objectives]
    k: int


def matrix(value: Any) -> np.ndarray:
    """Inline JSON rows, or a msgpack tensor {"shape", "data": little-endian float32 bytes}, as float32 [N, D]."""
    if isinstance(value, dict):
        return np.frombuffer(value["data"], dtype="<f4").reshape(value["shape"])
    return np.asarray(value, dtype=np.float32)


def decode(data: bytes, content_type: str) -> dict[str, Any]:
    """A request body as JSON or msgpack (the content types cascade-serve accepts)."""
    if content_type.startswith("application/msgpack"):
        decoded: dict[str, Any] = msgspec.msgpack.decode(data)
        return decoded
    loaded: dict[str, Any] = msgspec.json.decode(data)
    return loaded


def load_peer_bundle(store: Path, policy: str = "demo", seed: int | None = None) -> PeerBundle:
    """The policy's ACTIVE bundle (one intra-op thread, full graph optimisation, as a cascade-serve worker)."""
    folder = store / policy / (store / policy / "ACTIVE").read_text().strip()
    manifest = json.loads((folder / "manifest.json").read_text())
    if manifest.get("actors"):
        actors = list(manifest["actors"])
        raise ValueError(f"{folder}: peers serve the cascade graph's Gaussian actor only, not {actors}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    graph = folder / manifest["graphs"]["cascade"]["file"]
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    items = store / "_items" / (store / "_items" / "ACTIVE").read_text().strip()
    ids: list[str] = json.loads((items / "ids.json").read_text())
    fusion = manifest["fusion"]
    schema = manifest["feature_schema"]
    return PeerBundle(
        session=session,
        stage_sizes=np.asarray([stage["keep"] for stage in manifest["stages"]], dtype=np.int64),
        action_names=list(fusion["names"]),
        probability=float(fusion["exploration"]["probability"]),
        noise_clip=float(fusion["exploration"]["noise_clip"]),
        user_dim=len(schema["user_columns"]),
        context_dim=len(schema["context_columns"]),
        ids=ids,
        rows={item: row for row, item in enumerate(ids)},
        features=np.load(items / "features.npy"),
        predictions=np.load(items / "predictions.npy"),
        rng=np.random.default_rng(seed),
    )


def load_from_env() -> PeerBundle:
    """The bundle PEER_STORE / PEER_POLICY / PEER_EXPLORATION_SEED name (a peer started by the harness)."""
    seed = os.environ.get(SEED_ENV)
    store = Path(os.environ.get(STORE_ENV, "store"))
    return load_peer_bundle(store, os.environ.get(POLICY_ENV, "demo"), None if seed is None else int(seed))
