"""p50/p99 latency of single rank requests over real HTTP on 127.0.0.1 (a script, not a test).

    python -m loadtest.latency --store store [--requests 500 --candidates 1000]

Starts `cascade serve` (one worker, embedded Redis, logging on), sends pre-encoded requests one
at a time from this process, and prints client-side and server-side (timings.total_ms) latency.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

from loadtest.store_world import store_world
from models.sim.requests import rank_request
from pipelines.server import HOST, cascade_serve_command, free_port, running


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("store"))
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    sim = store_world(args.store)  # the served policy's world: its request widths and item ids
    rng = np.random.default_rng(7)
    bodies = [orjson.dumps(rank_request(sim, rng, n_candidates=args.candidates, k=args.k)) for _ in range(50)]

    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {"CASCADE_EMBEDDED_REDIS_DIR": f"/tmp/cascade-latency-{port}"}
    with running(cascade_serve_command(args.store, port, workers=1), base, env):
        client_ms: list[float] = []
        server_ms: list[float] = []
        with httpx.Client(base_url=base, headers={"content-type": "application/json"}) as client:
            for i in range(args.warmup + args.requests):
                body = bodies[i % len(bodies)]
                started = time.perf_counter()
                response = client.post("/v1/rank", content=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if i >= args.warmup:
                    client_ms.append(elapsed)
                    server_ms.append(response.json()["timings"]["total_ms"])

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.requests} sequential rank requests, {args.candidates} candidates, k={args.k}, 1 worker")
    print(
        f"client round trip ms: p50 {statistics.median(client_ms):.2f}  "
        f"p99 {_percentile(client_ms, 99):.2f}  mean {statistics.fmean(client_ms):.2f}"
    )
    print(f"server total_ms:      p50 {statistics.median(server_ms):.2f}  p99 {_percentile(server_ms, 99):.2f}")


if __name__ == "__main__":
    main()
