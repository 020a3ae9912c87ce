"""A closed-loop HTTP/1.1 load generator on raw asyncio sockets, for 127.0.0.1 only.

Each of `concurrency` keep-alive connections sends a pre-encoded request, waits for the whole
answer, and sends the next: so concurrency is fixed and every latency is one full round trip.
Written on sockets rather than an HTTP client library so that the generator, which shares the
machine's cores with the server, spends as little CPU per request as possible.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")


def _request_bytes(path: str, port: int, body: Body) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {body.content_type}\r\n"
        f"Content-Length: {len(body.data)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body.data


async def _read_answer(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length framed, as uvicorn sends them); return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    port: int,
    requests: Sequence[bytes],
    start: int,
    stop_at: float,
    record_after: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for payload in itertools.islice(itertools.cycle(requests), start, None):
            now = time.perf_counter()
            if now >= stop_at:
                return
            writer.write(payload)
            status = await _read_answer(reader)
            done = time.perf_counter()
            if status != 200:
                result.errors += 1
                result.first_error = result.first_error or f"HTTP {status}"
            elif now >= record_after:
                result.latencies_s.append(done - now)
    finally:
        writer.close()


async def _drive(
    port: int, path: str, bodies: Sequence[Body], concurrency: int, seconds: float, warmup: float
) -> LoadResult:
    requests = [_request_bytes(path, port, body) for body in bodies]
    result = LoadResult()
    begin = time.perf_counter()
    record_after = begin + warmup
    stop_at = record_after + seconds
    await asyncio.gather(
        *(_connection(port, requests, i * 7, stop_at, record_after, result) for i in range(concurrency))
    )
    result.seconds = time.perf_counter() - record_after
    return result


def drive(
    port: int, path: str, bodies: Sequence[Body], concurrency: int, seconds: float, warmup: float = 0.5
) -> LoadResult:
    """Keep `concurrency` requests in flight for `warmup` + `seconds`; record only after the warm-up."""
    try:
        import uvloop

        return uvloop.run(_drive(port, path, bodies, concurrency, seconds, warmup))
    except ImportError:  # uvloop is optional (uvicorn[standard] brings it): the asyncio loop also works
        return asyncio.run(_drive(port, path, bodies, concurrency, seconds, warmup))
