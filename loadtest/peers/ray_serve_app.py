"""The Ray Serve peer: one deployment with Serve's defaults, and a variant that micro-batches with @serve.batch.

Written as Ray Serve's docs show an HTTP deployment: a class whose `__call__` takes the Starlette request,
reads its JSON, and returns a dict. The cascade graph ranks one user's candidates per call, so the batched
variant still makes one onnxruntime call per request; what @serve.batch changes is how many requests one
hop through Ray's router and replica carries. Ray runs its own processes (GCS, raylet, the HTTP proxy, the
replica); the dashboard is off, since it would share the one core the server is pinned to. Takes the JSON
encodings (by id and inline rows).

Run: python -m loadtest.peers.ray_serve_app --store <store> --port 8000 [--batch] [--seed 0]
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

import ray
from ray import serve
from starlette.requests import Request

from loadtest.peers.bundle import load_peer_bundle

ROUTE = "/v1/rank"


@serve.deployment
class Ranker:
    def __init__(self, store: str, policy: str, seed: int | None) -> None:
        self.bundle = load_peer_bundle(Path(store), policy, seed)

    async def __call__(self, request: Request) -> dict[str, Any]:
        return self.bundle.rank(await request.json())


@serve.deployment
class BatchedRanker:
    def __init__(self, store: str, policy: str, seed: int | None) -> None:
        self.bundle = load_peer_bundle(Path(store), policy, seed)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def rank(self, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.bundle.rank(body) for body in bodies]

    async def __call__(self, request: Request) -> dict[str, Any]:
        answer: dict[str, Any] = await self.rank(await request.json())
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--policy", default="demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--batch", action="store_true", help="the @serve.batch variant")
    args = parser.parse_args()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    ray.init(include_dashboard=False, configure_logging=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        deployment = BatchedRanker if args.batch else Ranker
        serve.run(deployment.bind(str(args.store), args.policy, args.seed), route_prefix=ROUTE)  # type: ignore[union-attr]
        print(f"ready on http://{args.host}:{args.port}{ROUTE}", flush=True)
        stopped.wait()
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


if __name__ == "__main__":
    main()
