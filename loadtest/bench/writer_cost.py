"""The decision-log writer's client CPU per record, by batch size: the serving core's share of a write.

This process (the client) is pinned to core 0 and a redis-server to core 1, as in
loadtest/bench/pinned.py. For each record size and batch size, rounds alternate between three
mechanisms on the same Redis:

- `batch script`: service/shard_writer.py, one EVAL per shard taking the batch's records concatenated
  in one argument (lengths and entry ids as one text each), one EVAL of the decision index per batch;
- `script, a record per argument`: the same scripts' predecessor, one EVAL per shard with each record
  and each entry id its own argument, and one HSET of the index with a field per record;
- `xadd per record`: a pipelined XADD per record and one HSET.

The figure is `time.process_time` per record written, median over rounds. CPU time, not wall time:
what the client spends is what a pinned server loses, Redis' own work runs on the other core.

    python -m loadtest.bench.writer_cost --sizes 2400,22000 --batches 8,32,200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from redis.asyncio import Redis

from contracts import decision_record
from contracts.streams import decision_index_bucket, decision_index_key
from loadtest.bench.pinned import SERVER_CORE, pinned_redis
from service.log_entries import Pending
from service.shard_writer import ShardWriter

INDEX_SECONDS = 24 * 3600

# The predecessor's script: ARGV = trim option, threshold, field, then (entry id, record) pairs.
_PER_ARGUMENT = """
local xadd = {'XADD', KEYS[1]}
if ARGV[1] ~= '' then
  xadd[3], xadd[4], xadd[5] = ARGV[1], '~', ARGV[2]
end
local at = #xadd + 1
for i = 4, #ARGV, 2 do
  xadd[at], xadd[at + 1], xadd[at + 2] = ARGV[i], ARGV[3], ARGV[i + 1]
  redis.pcall(unpack(xadd))
end
return 0
"""


def _index(stream: str, batch: list[Pending]) -> tuple[str, dict[str, str]]:
    key = decision_index_key(stream, decision_index_bucket(batch[0].time, INDEX_SECONDS))
    return key, {entry.request_id: repr(entry.time) for entry in batch}


async def per_argument(redis: Redis, batch: list[Pending]) -> None:
    """The script with a record per argument, and the index as one HSET with a field per record."""
    pipe = redis.pipeline(transaction=False)
    pairs: list[bytes | str] = []
    for entry in batch:
        pairs += (entry.entry_id, entry.data)
    pipe.eval(_PER_ARGUMENT, 1, batch[0].shard, "", "", decision_record.STREAM_FIELD, *pairs)
    key, index = _index("bench:argument", batch)
    pipe.hset(key, mapping=index)  # type: ignore[arg-type]
    await pipe.execute(raise_on_error=False)


async def xadd_per_record(redis: Redis, batch: list[Pending]) -> None:
    """One XADD per record and one HSET of the index, pipelined."""
    pipe = redis.pipeline(transaction=False)
    for entry in batch:
        pipe.xadd(entry.shard, {decision_record.STREAM_FIELD: entry.data}, id=entry.entry_id)
    key, index = _index("bench:xadd", batch)
    pipe.hset(key, mapping=index)  # type: ignore[arg-type]
    await pipe.execute(raise_on_error=False)


async def measure(url: str, size: int, batch_size: int, rounds: int) -> dict[str, float]:
    """Median client CPU µs per record of each mechanism, rounds alternating between them."""
    redis = Redis.from_url(url, socket_timeout=5.0)
    writer = ShardWriter(redis, "bench:batch", INDEX_SECONDS, None)

    async def batch_script(batch: list[Pending]) -> None:
        await writer.write(batch)

    mechanisms: dict[str, tuple[str, Callable[[list[Pending]], Awaitable[None]]]] = {
        "batch script": ("{bench:batch:demo}:p", batch_script),
        "script, a record per argument": ("{bench:argument:demo}:p", lambda batch: per_argument(redis, batch)),
        "xadd per record": ("{bench:xadd:demo}:p", lambda batch: xadd_per_record(redis, batch)),
    }
    record = os.urandom(size)
    start_ms, seq = int(time.time() * 1000), 0
    samples: dict[str, list[float]] = {name: [] for name in mechanisms}
    for _ in range(rounds):
        for name, (shard, write) in mechanisms.items():
            batches = []
            for _ in range(5):
                now = time.time()
                ids = [f"{start_ms}-{seq + i}" for i in range(batch_size)]
                batches.append([Pending(0, shard, entry_id, uuid.uuid4().hex, now, record) for entry_id in ids])
                seq += batch_size
            began = time.process_time()
            for batch in batches:
                await write(batch)
            samples[name].append((time.process_time() - began) * 1e6 / (5 * batch_size))
    await redis.flushall()
    await redis.aclose()
    return {name: statistics.median(values[1:]) for name, values in samples.items()}  # the first round warms up


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2400,22000", help="record bytes (about N = 100 and N = 5,000 by id)")
    parser.add_argument("--batches", default="8,32,200", help="records per write")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    print("| record | batch | batch script (µs/record) | script, a record per argument | xadd per record |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="writer-cost-") as tmp, pinned_redis(Path(tmp)) as url:
        for size in (int(s) for s in args.sizes.split(",")):
            for batch_size in (int(b) for b in args.batches.split(",")):
                cost = asyncio.run(measure(url, size, batch_size, args.rounds))
                batch, argument, xadd = cost.values()
                print(f"| {size:,} B | {batch_size} | {batch:.1f} | {argument:.1f} | {xadd:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
