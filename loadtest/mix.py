"""The rank request mix a load test sends: candidate counts and encodings, with weights.

    LOADTEST_MIX="json-by-id:1000:2,json-inline:1000:1,msgpack-tensor:1000:1,json-by-id:100:1"

Each entry is `encoding:candidates:weight`. Encodings are the three ways a client can send candidates
(service/schema.py): ids only (looked up in the item table), inline JSON rows, msgpack float32 tensors.
Bodies are generated once per process from the simulator and encoded once, so a request costs the
load generator a socket write, not 1,000 rows of numpy → JSON: the server stays the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from models.sim.requests import rank_request
from models.sim.simulator import Simulator

JSON = "application/json"
MSGPACK = "application/msgpack"
ENCODINGS = ("json-inline", "json-by-id", "msgpack-tensor")
DEFAULT_MIX = "json-by-id:1000:2,json-inline:1000:1,msgpack-tensor:1000:1,json-by-id:100:1"


@dataclass(frozen=True)
class MixEntry:
    """One kind of rank request and its share of the traffic."""

    encoding: str
    candidates: int
    weight: float

    @property
    def name(self) -> str:
        """The Locust request name: the stats have one row per kind of request."""
        return f"/v1/rank [{self.encoding} {self.candidates}]"


def parse_mix(text: str) -> list[MixEntry]:
    """`encoding:candidates:weight,...` → entries; ValueError naming the bad entry."""
    entries = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        fields = part.split(":")
        if len(fields) != 3 or fields[0] not in ENCODINGS:
            raise ValueError(f"mix entry {part!r}: expected encoding:candidates:weight, encoding in {ENCODINGS}")
        try:
            candidates, weight = int(fields[1]), float(fields[2])
        except ValueError as exc:
            raise ValueError(f"mix entry {part!r}: candidates must be an int and weight a number") from exc
        if candidates < 1 or weight <= 0:
            raise ValueError(f"mix entry {part!r}: candidates must be >= 1 and weight > 0")
        entries.append(MixEntry(fields[0], candidates, weight))
    if not entries:
        raise ValueError("the mix is empty")
    return entries


@dataclass(frozen=True)
class RankBody:
    """One pooled rank request: the inline body (to derive feedback from) and the bytes sent."""

    entry: MixEntry
    body: dict[str, Any]
    encoded: bytes
    content_type: str


def _tensor(rows: list[list[float]]) -> dict[str, Any]:
    array = np.asarray(rows, dtype="<f4")
    return {"shape": list(array.shape), "data": array.tobytes()}


def encode(body: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    """The bytes and content type of an inline rank body sent in one of the three encodings."""
    candidates = body["candidates"]
    if encoding == "json-inline":
        return msgspec.json.encode(body), JSON
    if encoding == "json-by-id":
        return msgspec.json.encode({**body, "candidates": {"ids": candidates["ids"]}}), JSON
    if encoding == "msgpack-tensor":
        tensors = {
            "ids": candidates["ids"],
            "features": _tensor(candidates["features"]),
            "predictions": _tensor(candidates["predictions"]),
        }
        return msgspec.msgpack.encode({**body, "candidates": tensors}), MSGPACK
    raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")


def build_pool(
    sim: Simulator, mix: list[MixEntry], rng: np.random.Generator, per_entry: int, k: int
) -> dict[MixEntry, list[RankBody]]:
    """`per_entry` simulated bodies for each kind of request, encoded."""
    pool: dict[MixEntry, list[RankBody]] = {}
    for entry in mix:
        bodies = []
        for _ in range(per_entry):
            body = rank_request(sim, rng, n_candidates=entry.candidates, k=k)
            encoded, content_type = encode(body, entry.encoding)
            bodies.append(RankBody(entry, body, encoded, content_type))
        pool[entry] = bodies
    return pool
