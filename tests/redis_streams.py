"""Reading what the service wrote to Redis Streams, which it does asynchronously by design.

Decision records live in per-producer shards (contracts/streams.py); `wait_for_stream` on the decision
stream's name reads all of its shards, merged in entry-id order (one producer: the order served).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from contracts.streams import decision_shards_key


def decision_shards(client: redis.Redis, stream: str) -> list[str]:
    """Every shard name registered for a decision stream."""
    return sorted(name.decode() for name in client.smembers(decision_shards_key(stream)))  # type: ignore[union-attr]


def _entry_order(entry: Any) -> tuple[int, int]:
    ms, seq = entry[0].decode().split("-")
    return int(ms), int(seq)


def stream_entries(client: redis.Redis, stream: str) -> list[Any]:
    """A plain stream's entries, or a decision stream's entries from all its shards."""
    shards = decision_shards(client, stream)
    if not shards:
        return list(client.xrange(stream))  # type: ignore[arg-type]
    return sorted((e for shard in shards for e in client.xrange(shard)), key=_entry_order)  # type: ignore[union-attr]


def stream_length(client: redis.Redis, stream: str) -> int:
    shards = decision_shards(client, stream)
    return sum(int(client.xlen(name)) for name in shards) if shards else int(client.xlen(stream))


def wait_for_stream(client: redis.Redis, stream: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Entries of a stream once it holds `count` (the writer is asynchronous by design)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stream_length(client, stream) >= count:
            break
        time.sleep(0.02)
    return stream_entries(client, stream)


def the_shard(client: redis.Redis, stream: str, timeout: float = 10.0) -> str:
    """The one shard of a decision stream that one worker serving one policy writes to."""
    deadline = time.monotonic() + timeout
    while not (shards := decision_shards(client, stream)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(shards) == 1, shards
    return shards[0]


def delete_decisions(client: redis.Redis, stream: str) -> None:
    """Remove a decision stream's shards and their registry (a test starting over)."""
    for shard in decision_shards(client, stream):
        client.delete(shard)
    client.delete(decision_shards_key(stream), stream)
