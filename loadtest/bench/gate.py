"""The correctness gate: before any timing, every server answers the same requests with the same top-k.

Every server starts with the same exploration seed and, first thing after it is ready, gets the same
sequence of requests one at a time; the k-th answer of each server then used the k-th noise draw of the
same generator, so the top-k ids, their scores and the fusion weights must agree with cascade-serve's
(ids exactly, numbers to a tolerance: onnxruntime against torch for the naive baseline). A server that
does not take a request's encoding gets the same request in one it takes: msgpack tensors as inline rows,
ids only as inline rows gathered from the store's item table. The sequence must explore at least once, or
the noise would not be checked. A server that fails is not timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from loadtest.bench.loadgen import HOST, Body
from loadtest.bench.peer_servers import BY_ID, INLINE, TENSORS
from loadtest.bench.workload import JSON, Workload

RTOL, ATOL = 1e-4, 1e-4


@dataclass(frozen=True)
class GateRequest:
    n: int
    encoding: str
    index: int  # which body of the workload's (encoding, N) set


@dataclass(frozen=True)
class Answer:
    ids: list[str]
    scores: list[float]
    weights: list[float]  # fusion weights in the order of their names
    explored: bool | None = None  # cascade-serve says; peers do not


@dataclass
class GateResult:
    server: str
    passed: bool
    checked: int
    explored: int  # requests of the sequence that explored (cascade-serve's answers say)
    problems: list[str] = field(default_factory=list)


MIN_EXPLORED = 2  # requests of the sequence that must explore, so the noise is checked


def gate_sequence(sizes: list[int], per_cell: int, start: int = 0) -> list[GateRequest]:
    """Every (N, encoding) `per_cell` times, interleaved so each server's noise stream is used in one order."""
    return [
        GateRequest(n, e, i) for n in sizes for i in range(start, start + per_cell) for e in (BY_ID, INLINE, TENSORS)
    ]


def reference_answers(
    port: int, store: Path, workload: Workload, sizes: list[int], per_cell: int, accepts: tuple[str, ...],
    names: list[str], per_size: int,
) -> tuple[list[GateRequest], list[Answer | str]]:  # fmt: skip
    """cascade-serve's answers to the gate sequence, extended (smallest N first) until MIN_EXPLORED explored.

    Extending only appends: the reference's noise stream just goes on, as every peer's will."""
    sequence = gate_sequence(sizes, per_cell)
    answers = ask(port, store, workload, sequence, accepts, names)
    start = per_cell
    while sum(isinstance(a, Answer) and bool(a.explored) for a in answers) < MIN_EXPLORED and len(answers) < 500:
        more = gate_sequence(sizes[:1], 1, start % per_size)
        answers += ask(port, store, workload, more, accepts, names)
        sequence += more
        start += 1
    return sequence, answers


def _by_id_inline(store: Path, workload: Workload, n: int, index: int) -> Body:
    """A by-id body as inline rows from the store's item table: the same request for a server without one."""
    body = msgspec.json.decode(workload.bodies[BY_ID, n][index].data)
    table = store / "_items" / (store / "_items" / "ACTIVE").read_text().strip()
    rows = {item: row for row, item in enumerate(msgspec.json.decode((table / "ids.json").read_bytes()))}
    index_rows = np.asarray([rows[i] for i in body["candidates"]["ids"]])
    features = np.load(table / "features.npy")[index_rows]
    predictions = np.load(table / "predictions.npy")[index_rows]
    candidates = {**body["candidates"], "features": features.tolist(), "predictions": predictions.tolist()}
    return Body(msgspec.json.encode({**body, "candidates": candidates}), JSON)


def body_for(store: Path, workload: Workload, request: GateRequest, accepts: tuple[str, ...]) -> Body:
    """The request's body in its own encoding if the server takes it, else the same request re-encoded."""
    if request.encoding in accepts:
        return workload.bodies[request.encoding, request.n][request.index]
    if request.encoding == TENSORS and INLINE in accepts:
        return workload.bodies[INLINE, request.n][request.index]
    if request.encoding == BY_ID and INLINE in accepts:
        return _by_id_inline(store, workload, request.n, request.index)
    raise ValueError(f"no encoding of {request} that a server taking {accepts} accepts")


def _answer(payload: dict[str, Any], names: list[str]) -> Answer:
    weights = payload["fusion_weights"]
    return Answer(
        ids=[item["id"] for item in payload["items"]],
        scores=[float(item["score"]) for item in payload["items"]],
        weights=[float(weights[name]) for name in names],
        explored=payload.get("explored"),
    )


def ask(
    port: int, store: Path, workload: Workload, sequence: list[GateRequest], accepts: tuple[str, ...], names: list[str]
) -> list[Answer | str]:
    """The server's answers to the sequence, one request at a time (an error as its text)."""
    out: list[Answer | str] = []
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120) as client:
        for request in sequence:
            body = body_for(store, workload, request, accepts)
            response = client.post("/v1/rank", content=body.data, headers={"content-type": body.content_type})
            if response.status_code != 200:
                out.append(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                out.append(_answer(response.json(), names))
    return out


def compare(server: str, sequence: list[GateRequest], reference: list[Answer | str], got: list[Answer | str]
            ) -> GateResult:  # fmt: skip
    """Check one server's answers against cascade-serve's."""
    problems: list[str] = []
    for request, ref, answer in zip(sequence, reference, got, strict=True):
        where = f"N={request.n} {request.encoding} #{request.index}"
        if isinstance(ref, str):
            problems.append(f"{where}: cascade-serve failed: {ref}")
        elif isinstance(answer, str):
            problems.append(f"{where}: {answer}")
        elif answer.ids != ref.ids:
            problems.append(f"{where}: top-k ids differ ({answer.ids[:3]}… vs {ref.ids[:3]}…)")
        elif not np.allclose(answer.scores, ref.scores, rtol=RTOL, atol=ATOL):
            worst = float(np.max(np.abs(np.subtract(answer.scores, ref.scores))))
            problems.append(f"{where}: scores differ by up to {worst:.2e}")
        elif not np.allclose(answer.weights, ref.weights, rtol=RTOL, atol=ATOL):
            problems.append(f"{where}: fusion weights differ ({answer.weights} vs {ref.weights})")
    explored = sum(1 for ref in reference if isinstance(ref, Answer) and ref.explored)
    if explored < MIN_EXPLORED:
        problems.append(f"only {explored} requests of the sequence explored: the noise was not checked")
    return GateResult(server, not problems, len(sequence), explored, problems)
