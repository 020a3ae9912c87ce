"""One pipelined round trip per batch of decision records into this producer's stream shards.

Per record: XADD with the record's explicit entry id (contracts/streams.py explains the shards). Per
batch: one HSET of the decision index (request id → decision time, what the feedback route checks; the
same value on a replay) and its EXPIREAT. One command per record plus two per batch, where a key per
record with its own TTL made two per record: measured, the client's CPU per record halves. The
pipeline is not a transaction: a batch that lands partly is replayed whole, and Redis refuses the entries it
already holds by id. Shards are registered in `<stream>:shards` (SADD) with the first batch that
writes to them, before any reader could need them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from contracts import decision_record
from contracts.streams import decision_index_bucket, decision_index_key, decision_shards_key
from service.log_entries import Pending

# Redis' reply to an XADD whose explicit id is not above the stream's last one: already written.
_ALREADY_WRITTEN = "equal or smaller than the target stream top item"


@dataclass(frozen=True)
class StreamTrim:
    """Trim each shard at each append: keep about `threshold` entries (MAXLEN ~), or entries younger
    than `threshold` seconds (MINID ~, from the entry ids' milliseconds)."""

    strategy: Literal["maxlen", "minid"]
    threshold: float


@dataclass(frozen=True)
class WriteResult:
    deduplicated: int  # entries Redis already held (a replay of an applied batch)


class ShardWriter:
    """Writes batches of pending records; raises RedisError/OSError when Redis did not take them all."""

    def __init__(self, redis: Redis, stream: str, index_seconds: int, trim: StreamTrim | None) -> None:
        self._redis = redis
        self._stream = stream
        self._index_seconds = index_seconds
        self._trim = trim
        self._registered: set[str] = set()

    async def ping(self) -> None:
        """Raise RedisError/OSError when Redis does not answer."""
        await self._redis.ping()

    async def write(self, batch: list[Pending]) -> WriteResult:
        pipe = self._redis.pipeline(transaction=False)
        new = {entry.shard for entry in batch} - self._registered
        if new:
            pipe.sadd(decision_shards_key(self._stream), *sorted(new))
        trim = self._trim_args()
        field = decision_record.STREAM_FIELD
        index: dict[int, dict[str, str]] = {}
        for entry in batch:
            pipe.xadd(entry.shard, {field: entry.data}, id=entry.entry_id, **trim)
            # repr: the float unrounded, as the feedback script reads it back
            bucket = decision_index_bucket(entry.time, self._index_seconds)
            index.setdefault(bucket, {})[entry.request_id] = repr(entry.time)
        for bucket, decided in index.items():
            key = decision_index_key(self._stream, bucket)
            pipe.hset(key, mapping=decided)  # type: ignore[arg-type]
            pipe.expireat(key, (bucket + 2) * self._index_seconds)
        results = await pipe.execute(raise_on_error=False)
        deduplicated = 0
        for result in results:
            if isinstance(result, ResponseError):
                if _ALREADY_WRITTEN not in str(result):
                    raise result  # e.g. OOM: not written; the caller spools and replays the batch
                deduplicated += 1
        self._registered |= new
        return WriteResult(deduplicated)

    def _trim_args(self) -> dict[str, Any]:
        if self._trim is None:
            return {}
        if self._trim.strategy == "maxlen":
            return {"maxlen": int(self._trim.threshold), "approximate": True}
        return {"minid": f"{int(time.time() * 1000 - self._trim.threshold * 1000)}", "approximate": True}
