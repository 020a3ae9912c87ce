"""One pipelined round trip per batch of decision records into this producer's stream shards.

Per shard of the batch: one EVAL of a fixed script that XADDs each record with its explicit entry id
(contracts/streams.py explains the shards), in order. Per batch: one HSET of the decision index
(request id → decision time, what the feedback route checks; the same value on a replay) and its
EXPIREAT. The script is not there for atomicity (none is needed) but for the client's CPU: the
writer shares the serving core, and a pipelined XADD per record cost it about 25 µs of redis-py
work per record (building, packing and parsing one command and one reply each), where one EVAL
carrying a shard's records costs about 4 µs per record (both measured on this machine with 200
records of 3.6 KB a batch). The script touches one key, its shard, so it runs on any node of a
cluster; EVAL (not EVALSHA) so a restarted Redis needs no reload: Redis caches the script by its
digest either way.

Replays stay idempotent per entry: Redis refuses an XADD whose id is not above the shard's last one
("equal or smaller than the target stream top item"); the script counts those refusals and goes on,
and stops at any other error (e.g. OOM: nothing of the batch past it is written), which the caller
treats as a failed batch: it spools the batch and replays it whole later. Shards are registered in
`<stream>:shards` (SADD) with the first batch that writes to them, before any reader could need them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from contracts import decision_record
from contracts.streams import decision_index_bucket, decision_index_key, decision_shards_key
from service.log_entries import Pending

# Redis' reply to an XADD whose explicit id is not above the stream's last one: already written.
_ALREADY_WRITTEN = "equal or smaller than the target stream top item"

# KEYS[1]: the shard. ARGV: the trim option ("" | "MAXLEN" | "MINID") and its threshold, the stream
# field, then (entry id, record) pairs. Returns how many entries the shard already held.
_APPEND = f"""
local xadd = {{'XADD', KEYS[1]}}
if ARGV[1] ~= '' then
  xadd[3], xadd[4], xadd[5] = ARGV[1], '~', ARGV[2]
end
local at = #xadd + 1
local refused = 0
for i = 4, #ARGV, 2 do
  xadd[at], xadd[at + 1], xadd[at + 2] = ARGV[i], ARGV[3], ARGV[i + 1]
  local reply = redis.pcall(unpack(xadd))
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, '{_ALREADY_WRITTEN}', 1, true) then
      return reply
    end
    refused = refused + 1
  end
end
return refused
"""


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
        by_shard: dict[str, list[bytes | str]] = {}
        index: dict[int, dict[str, str]] = {}
        for entry in batch:
            by_shard.setdefault(entry.shard, []).extend((entry.entry_id, entry.data))
            # repr: the float unrounded, as the feedback script reads it back
            bucket = decision_index_bucket(entry.time, self._index_seconds)
            index.setdefault(bucket, {})[entry.request_id] = repr(entry.time)
        new = by_shard.keys() - self._registered
        if new:
            pipe.sadd(decision_shards_key(self._stream), *sorted(new))
        trim = self._trim_args()
        for shard, pairs in by_shard.items():
            pipe.eval(_APPEND, 1, shard, *trim, decision_record.STREAM_FIELD, *pairs)
        for bucket, decided in index.items():
            key = decision_index_key(self._stream, bucket)
            pipe.hset(key, mapping=decided)  # type: ignore[arg-type]
            pipe.expireat(key, (bucket + 2) * self._index_seconds)
        results = await pipe.execute(raise_on_error=False)
        deduplicated = 0
        for result in results:
            if isinstance(result, ResponseError):
                raise result  # e.g. OOM: not (all) written; the caller spools and replays the batch
        for result in results[bool(new) : bool(new) + len(by_shard)]:
            deduplicated += int(result)
        self._registered |= new
        return WriteResult(deduplicated)

    def _trim_args(self) -> tuple[str, str]:
        if self._trim is None:
            return "", ""
        if self._trim.strategy == "maxlen":
            return "MAXLEN", str(int(self._trim.threshold))
        return "MINID", f"{int(time.time() * 1000 - self._trim.threshold * 1000)}"
