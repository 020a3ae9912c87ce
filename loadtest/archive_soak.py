"""Archive soak: Redis memory and archive throughput while the service logs at a steady rate.

    nice -n 10 python -m loadtest.archive_soak --store store --seconds 300 --rate 100 --candidates 1000

1. an embedded Redis, `cascade serve` (one worker) and `cascade archive` on loopback;
2. for `--seconds`, rank requests (candidates by id, from the store's item table) at `--rate` per second
   on a fixed schedule, each followed by one feedback event; every 5 s Redis's used_memory and the
   stream lengths are sampled;
3. the archiver is stopped (it flushes), then the rows in the lake are counted;
4. archive capacity: with the archiver stopped, about `--backlog` real records are left in the streams and
   one archiver drain (what `cascade archive --once` runs, in process) takes them, timed (records/s).
Writes a JSON result (default loadtest/results/archive_soak.json) and its section of BENCHMARKS.md
(between the `archive:soak` markers). Everything started is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import redis

from archive.main import build_archiver
from archive.settings import ArchiveSettings
from contracts import decision_record
from contracts.lake import DATASETS, dataset_files
from contracts.streams import decision_shards_key
from loadtest.bench.sections import write_section
from loadtest.store_world import store_world
from models.sim.requests import rank_request
from pipelines.server import cascade_serve
from service.embedded_redis import EmbeddedRedis

SAMPLE_SECONDS = 5.0
JSON = {"content-type": "application/json"}


def _bodies(store: Path, n: int, candidates: int, seed: int = 0) -> list[bytes]:
    sim = store_world(store)  # the served policy's world: its widths and item table ids
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        body = rank_request(sim, rng, n_candidates=candidates, k=10, user_id=f"soak-{i % 500}")
        out.append(json.dumps({**body, "candidates": {"ids": body["candidates"]["ids"]}}).encode())
    return out


def _steady_load(base: str, bodies: list[bytes], rate: float, seconds: float, threads: int = 8) -> dict[str, int]:
    """Requests on a fixed schedule (request i at i / rate s), spread over `threads` senders, each followed
    by its feedback event. A sender that falls behind sends at once (counted in `late_starts`)."""
    counts = {"sent": 0, "ok": 0, "errors": 0, "feedback": 0, "late_starts": 0}
    lock = threading.Lock()
    total = int(rate * seconds)
    start = time.monotonic()

    def sender(offset: int) -> None:
        local = dict.fromkeys(counts, 0)
        with httpx.Client(base_url=base, timeout=30.0) as client:
            for i in range(offset, total, threads):
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -1.0:
                    local["late_starts"] += 1
                local["sent"] += 1
                try:
                    answer = client.post("/v1/rank", content=bodies[i % len(bodies)], headers=JSON)
                    if answer.status_code != 200:
                        local["errors"] += 1
                        continue
                    local["ok"] += 1
                    body = {"request_id": answer.json()["request_id"], "rewards": {"like": 1.0}}
                    for _ in range(50):  # the decision reaches Redis asynchronously: 404 until it does
                        sent = client.post("/v1/feedback", json=body)
                        if sent.status_code != 404:
                            break
                        time.sleep(0.02)
                    local["feedback"] += int(sent.status_code == 202)
                except httpx.HTTPError:
                    local["errors"] += 1
        with lock:
            for key, value in local.items():
                counts[key] += value

    workers = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


def _sample(client: redis.Redis, streams: list[str], stop: threading.Event, out: list[dict[str, Any]]) -> None:
    start = time.monotonic()
    while True:
        info = client.info("memory")
        lengths = _lengths(client, streams)
        out.append({"t": round(time.monotonic() - start, 1), "used_memory": int(info["used_memory"]), **lengths})
        if stop.wait(SAMPLE_SECONDS):
            return


def _lengths(client: redis.Redis, streams: list[str]) -> dict[str, int]:
    """Entries per logical stream: a decision stream's shards (contracts/streams.py) and itself together."""
    out = {}
    for stream in streams:
        shards: Any = client.smembers(decision_shards_key(stream))
        out[stream] = int(client.xlen(stream)) + sum(int(client.xlen(name)) for name in shards)
    return out


def _lake_rows(lake: Path) -> dict[str, int]:
    return {d: sum(pq.ParquetFile(f).metadata.num_rows for f in dataset_files(lake, d)) for d in DATASETS}


def _archive_command(lake: Path) -> list[str]:
    return [sys.executable, "-m", "cascade_cli", "archive", "--lake", str(lake)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archive-soak-"))
    server = EmbeddedRedis(work / "redis")
    client = redis.Redis.from_url(server.url)
    lake = work / "lake"
    streams = ["cascade:decisions", "cascade:feedback"]
    env = {"REDIS_URL": server.url, "CASCADE_LOG_SPOOL_DIR": str(work / "spool"), "CASCADE_ARCHIVE_FLUSH_SECONDS": "5"}
    bodies = _bodies(args.store, 200, args.candidates)
    command = " ".join(["nice -n 10 python -m loadtest.archive_soak", *sys.argv[1:]])
    result: dict[str, Any] = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    archiver = None
    try:
        with cascade_serve(args.store, env, work / "server.log", workers=1) as base:
            archiver = subprocess.Popen(_archive_command(lake), env={**os.environ, **env})
            result["load_before"] = os.getloadavg()
            samples: list[dict[str, Any]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=_sample, args=(redis.Redis.from_url(server.url), streams, stop, samples))
            sampler.start()
            started = time.monotonic()
            try:
                result["load"] = _steady_load(base, bodies, args.rate, args.seconds)
            finally:
                stop.set()
                sampler.join()
            result["soak_seconds"] = round(time.monotonic() - started, 1)
            result["load_after"] = os.getloadavg()
            archiver.terminate()
            archiver.wait(timeout=60)
            archiver = None
            result["samples"] = samples
            result["lake_rows"] = _lake_rows(lake)
            result["redis_after_soak"] = _lengths(client, streams)

            # Capacity: a backlog of real records, drained by one bounded archiver run.
            backlog_bodies = bodies[: max(1, min(len(bodies), args.backlog))]
            _steady_load(base, backlog_bodies, rate=args.backlog_rate, seconds=args.backlog / args.backlog_rate)
            deadline = time.monotonic() + 120
            while _lengths(client, streams)[streams[0]] < args.backlog * 0.95 and time.monotonic() < deadline:
                time.sleep(0.5)
            backlog = sum(_lengths(client, streams).values())
            memory_full = int(client.info("memory")["used_memory"])
            archiver_in_process = build_archiver(ArchiveSettings(lake=lake, redis_url=server.url))
            started = time.monotonic()
            archiver_in_process.drain()  # what `cascade archive --once` runs, timed without interpreter start
            seconds = time.monotonic() - started
            result["capacity"] = {
                "records": backlog,
                "seconds": round(seconds, 2),
                "records_per_second": round(backlog / seconds, 1),
                "used_memory_before": memory_full,
                "used_memory_after": int(client.info("memory")["used_memory"]),
                "left_in_streams": _lengths(client, streams),
            }
    finally:
        if archiver is not None:
            archiver.terminate()
            archiver.wait(timeout=60)
        client.close()
        server.stop(disconnect_others=True)
    return result


def section(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section of one soak."""
    samples = result["samples"]
    peak = max(s["used_memory"] for s in samples)
    load, capacity = result["load"], result["capacity"]
    lines = [
        "## Archive soak: Redis memory and archive throughput (N = 1000 by id)",
        "",
        f"`{result['command']}` on {result['machine']}, {result['when']}. The machine was shared with other",
        f"work: load average {result['uptime_before']} before and {result['uptime_after']} after (`uptime`),",
        "so the rates are what this run got, not what the code can do on a quiet machine. Before the archiver",
        "(untrimmed stream, ~10 KB JSON records) the same 5 minutes at 100 requests/s grew Redis to 411 MB.",
        "",
        f"- Steady load: {load['sent']} rank requests in {result['soak_seconds']} s "
        f"({load['sent'] / result['soak_seconds']:.1f}/s asked, {load['ok']} answered 200, {load['errors']} errors, "
        f"{load['late_starts']} started over 1 s late), each with one feedback event ({load['feedback']} accepted); "
        "one uvicorn worker, `cascade archive` beside it (flush every 5 s).",
        f"- Records: schema {decision_record.SCHEMA_VERSION} (contracts/decision_record.py), as stored by the service.",
        f"- Lake after the soak: {result['lake_rows']['decisions']} decisions, {result['lake_rows']['feedback']} "
        f"feedback rows; left in Redis: {result['redis_after_soak']}.",
        f"- Redis used_memory: {samples[0]['used_memory'] / 2**20:.1f} MiB at the start, peak {peak / 2**20:.1f} MiB, "
        f"{samples[-1]['used_memory'] / 2**20:.1f} MiB at the end; the decision stream never held more than "
        f"{max(s['cascade:decisions'] for s in samples)} entries. What still grows is the per-request index keys "
        "(`decision_index_seconds`, ~100 B each), not the records.",
        f"- Archive capacity: a backlog of {capacity['records']} records (decisions + feedback) drained by one "
        f"archiver drain (`cascade archive --once`, in process) in {capacity['seconds']} s: "
        f"**{capacity['records_per_second']} records/s** read, decoded, written as Parquet, acknowledged and "
        f"trimmed; used_memory {capacity['used_memory_before'] / 2**20:.1f} → "
        f"{capacity['used_memory_after'] / 2**20:.1f} MiB.",
        "",
        "| t (s) | used_memory (MiB) | decision stream entries | feedback stream entries |",
        "|---:|---:|---:|---:|",
    ]
    step = max(1, len(samples) // 12)
    for sample in samples[::step]:
        lines.append(
            f"| {sample['t']:.0f} | {sample['used_memory'] / 2**20:.1f} | {sample['cascade:decisions']} "
            f"| {sample['cascade:feedback']} |"
        )
    return "\n".join(lines)


def _uptime() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("store"))
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=100.0, help="rank requests per second (open loop)")
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=3000, help="records left in Redis for the capacity drain")
    parser.add_argument("--backlog-rate", type=float, default=200.0)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/archive_soak.json"))
    parser.add_argument("--benchmarks", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    before = _uptime()
    result = run(args)
    result |= {
        "uptime_before": before,
        "uptime_after": _uptime(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    write_section(args.benchmarks, "archive:soak", section(result))
    peak = max(s["used_memory"] for s in result["samples"])
    print(
        f"soak: {result['load']['ok']} ranks in {result['soak_seconds']} s, lake {result['lake_rows']}, "
        f"Redis used_memory peak {peak / 2**20:.1f} MiB; capacity {result['capacity']['records_per_second']} records/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
