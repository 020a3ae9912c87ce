"""The request set of a benchmark run: for each N, the same candidates encoded three ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from loadtest.bench.loadgen import Body
from models.sim.requests import rank_request
from models.sim.simulator import Simulator

JSON = "application/json"
MSGPACK = "application/msgpack"
ENCODINGS = ("json-inline", "json-by-id", "msgpack-tensor")


@dataclass(frozen=True)
class Workload:
    """Bodies by (encoding, N); body i of every encoding carries the same user, context and candidates."""

    bodies: dict[tuple[str, int], list[Body]]
    raw: dict[int, list[dict[str, Any]]]  # the inline JSON bodies as objects (the in-process limit reads them)


def _tensor(rows: list[list[float]]) -> dict[str, Any]:
    array = np.asarray(rows, dtype="<f4")
    return {"shape": list(array.shape), "data": array.tobytes()}


def build_workload(sim: Simulator, sizes: list[int], per_size: int, k: int = 10, seed: int = 0) -> Workload:
    """`per_size` requests for each N, in every encoding."""
    bodies: dict[tuple[str, int], list[Body]] = {}
    raw: dict[int, list[dict[str, Any]]] = {}
    for n in sizes:
        rng = np.random.default_rng([seed, n])
        inline = [rank_request(sim, rng, n_candidates=n, k=k) for _ in range(per_size)]
        raw[n] = inline
        by_id = [{**body, "candidates": {"ids": body["candidates"]["ids"]}} for body in inline]
        tensors = [
            {
                **body,
                "candidates": {
                    "ids": body["candidates"]["ids"],
                    "features": _tensor(body["candidates"]["features"]),
                    "predictions": _tensor(body["candidates"]["predictions"]),
                },
            }
            for body in inline
        ]
        bodies["json-inline", n] = [Body(msgspec.json.encode(b), JSON) for b in inline]
        bodies["json-by-id", n] = [Body(msgspec.json.encode(b), JSON) for b in by_id]
        bodies["msgpack-tensor", n] = [Body(msgspec.msgpack.encode(b), MSGPACK) for b in tensors]
    return Workload(bodies, raw)
