"""Hot swap under load: the real server (granian), 2 workers, 127.0.0.1, 10 versions published one after another.

No request may fail; per client and worker the versions served only move forward; every worker
converges on the last version. Latency during the swaps and in steady state is measured in the
same run and printed (run with -s to see it), never asserted.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from redis.asyncio import Redis

from contracts.store import active_version
from pipelines.server import cascade_serve
from service.routing import RoutingStore
from tests.versions import add_version, private_store

VERSIONS = [f"v{i:02d}" for i in range(1, 11)]
CLIENTS = 4
# A kept-alive connection stays with the worker that accepted it, and which worker accepts is the
# kernel's choice, so four long-lived connections can all land on one worker. Reconnecting this
# often spreads the clients over both workers (each accept is a new draw).
REQUESTS_PER_CONNECTION = 8


@dataclass
class Sample:
    client: int
    worker: str
    version: str
    status: int
    sent: float
    latency_ms: float


@pytest.fixture
def swap_server(store: Path, redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    own = private_store(store, tmp_path / "store")
    for version in VERSIONS:
        add_version(own, version)
    namespace = f"test:{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": redis_url,
        "CASCADE_ROUTING_NAMESPACE": namespace,
        "CASCADE_DECISION_STREAM": f"{namespace}:decisions",
        "CASCADE_RETAIN_VERSIONS": "20",
    }
    with cascade_serve(own, env, workers=2, ready_s=90, grace_s=20) as base:
        time.sleep(1.0)  # both workers: readyz may have come from the first one up
        yield base, own, namespace


def _publish_all(redis_url: str, store: Path, namespace: str, pause: float) -> list[float]:
    """Activate each version in turn through the routing state, as `cascade publish` does."""

    async def run() -> list[float]:
        redis = Redis.from_url(redis_url)
        routing = RoutingStore(redis, store, namespace)
        times = []
        try:
            for version in VERSIONS:
                await routing.activate("demo", version)
                times.append(time.monotonic())
                await asyncio.sleep(pause)
        finally:
            await redis.aclose()
        return times

    return asyncio.run(run())


@pytest.mark.e2e
def test_swapping_ten_versions_under_load_fails_no_request(
    swap_server: tuple[str, Path, str], redis_url: str, make_request: Callable[..., dict[str, Any]]
) -> None:
    base, store, namespace = swap_server
    order = {active_version(store, "demo"): 0, **{v: i + 1 for i, v in enumerate(VERSIONS)}}
    bodies = [orjson.dumps(make_request(n_candidates=1000, k=10)) for _ in range(20)]
    samples: list[Sample] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        rng = np.random.default_rng(index)
        while not stop.is_set():
            with httpx.Client(base_url=base, headers={"content-type": "application/json"}, timeout=10) as http:
                for _ in range(REQUESTS_PER_CONNECTION):
                    if stop.is_set():
                        break
                    sent = time.monotonic()
                    try:
                        response = http.post("/v1/rank", content=bodies[int(rng.integers(len(bodies)))])
                        status = response.status_code
                        version = response.json().get("version", "") if status == 200 else ""
                        worker = response.headers.get("x-cascade-worker", "")
                    except httpx.HTTPError:
                        status, version, worker = 0, "", ""
                    with lock:
                        samples.append(Sample(index, worker, version, status, sent, (time.monotonic() - sent) * 1000))

    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)  # steady state before the swaps
    both_answered = time.monotonic() + 30  # a hang guard: the assert below says what went wrong
    while time.monotonic() < both_answered:
        with lock:
            if len({s.worker for s in samples}) >= 2:
                break
        time.sleep(0.05)
    swaps_started = time.monotonic()
    publish_times = _publish_all(redis_url, store, namespace, pause=0.3)
    last_publish = publish_times[-1]
    deadline = last_publish + 15  # a hang guard, not a performance assert: convergence is measured
    while time.monotonic() < deadline:
        with lock:
            late = [s for s in samples if s.sent > last_publish and s.version == VERSIONS[-1]]
        if len({s.worker for s in late}) >= 2:
            break
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)

    failed = [s for s in samples if s.status != 200]
    assert not failed, f"{len(failed)} of {len(samples)} requests failed: {failed[:3]}"
    workers = {s.worker for s in samples}
    assert len(workers) == 2, f"expected answers from 2 workers, got {workers}"
    for client in range(CLIENTS):
        for worker in workers:
            seen = [
                order[s.version]
                for s in sorted(samples, key=lambda s: s.sent)
                if (s.client, s.worker) == (client, worker)
            ]
            assert seen == sorted(seen), f"client {client} saw worker {worker} go back: {seen}"
    converged: dict[str, float] = {}
    for worker in workers:
        final = [s for s in samples if s.worker == worker and s.version == VERSIONS[-1] and s.sent > last_publish]
        assert final, f"worker {worker} never served the last version"
        converged[worker] = (min(s.sent + s.latency_ms / 1000 for s in final) - last_publish) * 1000

    steady = [s.latency_ms for s in samples if s.sent < swaps_started]
    swapping = [s.latency_ms for s in samples if swaps_started <= s.sent <= last_publish + 0.5]
    print(
        f"\nhot swap: {len(samples)} requests, 0 failed; converged after last publish (ms): "
        f"{ {w: round(t, 1) for w, t in converged.items()} }\n"
        f"steady  p50 {np.percentile(steady, 50):.2f} ms  p99 {np.percentile(steady, 99):.2f} ms  (n={len(steady)})\n"
        f"swaps   p50 {np.percentile(swapping, 50):.2f} ms  p99 {np.percentile(swapping, 99):.2f} ms  "
        f"(n={len(swapping)})"
    )
