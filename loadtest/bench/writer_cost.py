"""The decision-log writer's client CPU per record, by batch size: the serving core's share of a write.

This process (the client) is pinned to core 0 and a redis-server to core 1, as in
loadtest/bench/pinned.py. For each record size and batch size, rounds alternate between
service/shard_writer.py (one EVAL per shard carrying its records, one HSET of the decision index) and
the mechanism it replaced (a pipelined XADD per record, one HSET), both on the same Redis; the
figure is `time.process_time` per record written, median over rounds. CPU time, not wall time:
what the client spends is what a pinned server loses, Redis' own work runs on the other core.

    python -m loadtest.bench.writer_cost --sizes 3700,23000 --batches 8,32,200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis

from contracts import decision_record
from contracts.streams import decision_index_bucket, decision_index_key
from loadtest.bench.pinned import SERVER_CORE, pinned_redis
from service.log_entries import Pending
from service.shard_writer import ShardWriter

INDEX_SECONDS = 24 * 3600


async def xadd_per_record(redis: Redis, batch: list[Pending]) -> None:
    """The replaced mechanism: one XADD per record and one HSET of the index, pipelined."""
    pipe = redis.pipeline(transaction=False)
    index: dict[str, str] = {}
    for entry in batch:
        pipe.xadd(entry.shard, {decision_record.STREAM_FIELD: entry.data}, id=entry.entry_id)
        index[entry.request_id] = repr(entry.time)
    key = decision_index_key("bench:xadd", decision_index_bucket(batch[0].time, INDEX_SECONDS))
    pipe.hset(key, mapping=index)  # type: ignore[arg-type]
    await pipe.execute(raise_on_error=False)


async def measure(url: str, size: int, batch_size: int, rounds: int) -> dict[str, float]:
    """Median client CPU µs per record of each writer, rounds alternating between them."""
    redis = Redis.from_url(url, socket_timeout=5.0)
    writer = ShardWriter(redis, "bench:eval", INDEX_SECONDS, None)
    record = os.urandom(size)
    start_ms, seq = int(time.time() * 1000), 0
    samples: dict[str, list[float]] = {"eval per shard": [], "xadd per record": []}
    for _ in range(rounds):
        for name in samples:
            shard = "{bench:eval:demo}:p" if name == "eval per shard" else "{bench:xadd:demo}:p"
            batches = []
            for _ in range(5):
                now = time.time()
                ids = [f"{start_ms}-{seq + i}" for i in range(batch_size)]
                batches.append([Pending(0, shard, entry_id, uuid.uuid4().hex, now, record) for entry_id in ids])
                seq += batch_size
            began = time.process_time()
            for batch in batches:
                if name == "eval per shard":
                    await writer.write(batch)
                else:
                    await xadd_per_record(redis, batch)
            samples[name].append((time.process_time() - began) * 1e6 / (5 * batch_size))
    await redis.flushall()
    await redis.aclose()
    return {name: statistics.median(values[1:]) for name, values in samples.items()}  # the first round warms up


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3700,23000", help="record bytes (about N = 100 and N = 5,000 by id)")
    parser.add_argument("--batches", default="8,32,200", help="records per write")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    print("| record | batch | eval per shard (µs/record) | xadd per record (µs/record) | ratio |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="writer-cost-") as tmp, pinned_redis(Path(tmp)) as url:
        for size in (int(s) for s in args.sizes.split(",")):
            for batch_size in (int(b) for b in args.batches.split(",")):
                cost = asyncio.run(measure(url, size, batch_size, args.rounds))
                new, old = cost["eval per shard"], cost["xadd per record"]
                print(f"| {size:,} B | {batch_size} | {new:.1f} | {old:.1f} | {new / old:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
