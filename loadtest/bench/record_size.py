"""Decision record size per request: schema 1 (JSON, candidate ids as strings), 2 (msgpack, float lists), now.

Sends by-id rank requests of N candidates to a real `cascade serve` on 127.0.0.1, reads the records it
logged from Redis, and reports each record's stored bytes against the same record in the schema-1
encoding (JSON, every candidate id a string) and in the schema-2 one (msgpack, rows packed, every float
a msgpack float64 in a list), what the stream held before.

    python -m loadtest.bench.record_size --store STORE --sizes 100,1000,5000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import redis

from contracts import decision_record
from contracts.item_table import active_items_version, load_item_table
from contracts.packed_floats import to_lists
from contracts.store import active_version, read_manifest
from contracts.streams import DEFAULT_DECISION_STREAM, decision_shards_key
from loadtest.bench.servers import cascade_serve
from service.embedded_redis import EmbeddedRedis


def schema_1_bytes(record: decision_record.DecisionRecord, table_ids: Sequence[str]) -> int:
    """The record as schema 1 stored it: JSON, candidates as their id strings."""
    data = msgspec.to_builtins(record, enc_hook=to_lists)
    data["schema_version"] = 1
    data["candidates"]["ids"] = decision_record.candidate_ids(record.candidates, table_ids)
    data["candidates"].pop("rows")
    return len(msgspec.json.encode(data))


def schema_2_bytes(record: decision_record.DecisionRecord) -> int:
    """The record as schema 2 stored it: msgpack, rows packed, float arrays as lists of float64."""
    data = msgspec.to_builtins(record, builtin_types=(bytes,), enc_hook=to_lists)
    data["schema_version"] = 2
    return len(msgspec.msgpack.encode(data))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a store with a policy and an item table")
    parser.add_argument("--policy", default="demo")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--requests", type=int, default=20, help="requests per N")
    args = parser.parse_args(argv)
    table = load_item_table(args.store, active_items_version(args.store) or "")
    schema = read_manifest(args.store / args.policy / (active_version(args.store, args.policy) or "")).feature_schema
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="record-size-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis")
        os.environ["REDIS_URL"] = server.url
        try:
            client = redis.Redis.from_url(server.url)
            print(
                "| N | schema 1 (JSON, ids) bytes | schema 2 (msgpack, float lists) bytes "
                f"| now: schema {decision_record.SCHEMA_VERSION} bytes | now / schema 1 | now / schema 2 |"
            )
            print("|---|---|---|---|---|---|")
            with cascade_serve(args.store, workers=1, log_decisions=True, logs=Path(tmp)) as port:
                for n in (int(s) for s in args.sizes.split(",")):
                    _clear(client)
                    for _ in range(args.requests):
                        ids = [table.ids[i] for i in rng.choice(len(table.ids), size=n, replace=False)]
                        body = {
                            "user": {"id": "u1", "features": rng.standard_normal(schema.user_dim).tolist()},
                            "candidates": {"ids": ids},
                            "k": 10,
                        }
                        request = urllib.request.Request(
                            f"http://127.0.0.1:{port}/v1/rank",
                            data=json.dumps(body).encode(),
                            headers={"content-type": "application/json"},
                        )
                        urllib.request.urlopen(request, timeout=30).read()
                    entries = _wait(client, args.requests)
                    now = [len(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
                    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
                    one = statistics.median(schema_1_bytes(r, table.ids) for r in records)
                    two = statistics.median(schema_2_bytes(r) for r in records)
                    a = statistics.median(now)
                    print(f"| {n} | {one:,.0f} | {two:,.0f} | {a:,.0f} | {a / one:.2f} | {a / two:.2f} |", flush=True)
            client.close()
        finally:
            os.environ.pop("REDIS_URL", None)
            server.stop(disconnect_others=True)
    return 0


def _shards(client: redis.Redis) -> list[bytes]:
    """Every shard of the decision stream (each worker appends to its own, contracts/streams.py)."""
    return sorted(client.smembers(decision_shards_key(DEFAULT_DECISION_STREAM)))  # type: ignore[arg-type]


def _clear(client: redis.Redis) -> None:
    for shard in _shards(client):
        client.xtrim(shard, maxlen=0)


def _wait(client: redis.Redis, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    deadline = time.monotonic() + 30
    while sum(client.xlen(s) for s in _shards(client)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [entry for shard in _shards(client) for entry in client.xrange(shard)]  # type: ignore[misc,union-attr]


if __name__ == "__main__":
    raise SystemExit(main())
