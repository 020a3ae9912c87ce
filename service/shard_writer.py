"""One pipelined round trip per batch of decision records into this producer's stream shards.

Per shard of the batch: one EVAL of a fixed script that XADDs each record with its explicit entry id
(contracts/streams.py explains the shards), in order. Per batch and index period: one EVAL that HSETs
the decision index (request id → decision time, what the feedback route checks; the same value on a
replay) and sets its EXPIREAT. The scripts are not there for atomicity (none is needed) but for the
client's CPU: the writer shares the serving core. A pipelined XADD per record cost it about 25 µs of
redis-py work per record (building, packing and parsing one command and one reply each); a script
that takes each record as its own argument about 13 µs (redis-py packs every argument in Python,
and above 6,000 bytes sends each one with its own `sendall`). So each script takes a whole batch in
a few arguments: the records concatenated into arguments of about 64 KB, each with its records'
lengths as text, and the entry ids as one text; the script slices them apart on the Redis side,
which runs on its own core.

Each script touches one key, so it runs on any node of a cluster; EVAL (not EVALSHA) so a restarted
Redis needs no reload: Redis caches the script by its digest either way.

Replays stay idempotent per entry: Redis refuses an XADD whose id is not above the shard's last one
("equal or smaller than the target stream top item"); the script counts those refusals and goes on,
and stops at any other error (e.g. OOM: nothing of the batch past it is written), which the caller
treats as a failed batch: it spools the batch and replays it whole later. A batch whose parts do not
add up (lengths against the concatenated bytes) is refused whole before anything is written.

Every batch registers its shards in `<stream>:shards` (SADD), after its appends in the same pipeline.
Every batch, not only the first: the archiver deletes a shard idle for long enough (archive/retire.py),
and a later write (a replayed spool, or the worker serving the policy again) recreates it, so it must be
registered again. After the appends: a reader that unregisters a shard it just deleted then checks that
no append recreated it meanwhile, and that check is sound only if an append is never registered before
it happens.
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

# `lengths` (decimal, space-separated) cut `blob` into its parts; refuses the whole call unless they
# add up exactly. `words`: a space-separated text's words. Shared by both scripts.
_SPLIT = """
local function split(lengths, blob)
  local parts, at = {}, 1
  for n in string.gmatch(lengths, '%d+') do
    local size = tonumber(n)
    parts[#parts + 1] = string.sub(blob, at, at + size - 1)
    at = at + size
  end
  if at ~= #blob + 1 then
    return nil
  end
  return parts
end

local function words(text)
  local found = {}
  for word in string.gmatch(text, '%S+') do
    found[#found + 1] = word
  end
  return found
end
"""

# KEYS[1]: the shard. ARGV: the trim option ("" | "MAXLEN" | "MINID") and its threshold, the stream
# field, the entry ids (space-separated), then (lengths, records concatenated) pairs, in order. Returns
# how many entries the shard already held.
_APPEND = f"""{_SPLIT}
local records = {{}}
if (#ARGV - 4) % 2 ~= 0 then
  records = nil
end
for a = 5, records and #ARGV or 0, 2 do
  local parts = split(ARGV[a], ARGV[a + 1])
  if parts == nil then
    records = nil
    break
  end
  for _, record in ipairs(parts) do
    records[#records + 1] = record
  end
end
local ids = words(ARGV[4])
if records == nil or #records ~= #ids then
  return redis.error_reply('ERR decision batch: entry ids, lengths and records do not match')
end
local xadd = {{'XADD', KEYS[1]}}
if ARGV[1] ~= '' then
  xadd[3], xadd[4], xadd[5] = ARGV[1], '~', ARGV[2]
end
local at = #xadd + 1
local refused = 0
for i = 1, #ids do
  xadd[at], xadd[at + 1], xadd[at + 2] = ids[i], ARGV[3], records[i]
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

# KEYS[1]: an index hash. ARGV: its EXPIREAT, the request ids' lengths, the request ids concatenated,
# the decision times (space-separated, as Python's repr wrote them).
_INDEX = f"""{_SPLIT}
local requests = split(ARGV[2], ARGV[3])
local times = words(ARGV[4])
if requests == nil or #requests ~= #times then
  return redis.error_reply('ERR decision index: request ids and times do not match')
end
for i = 1, #requests do
  redis.call('HSET', KEYS[1], requests[i], times[i])
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return #requests
"""


# Records are concatenated into arguments of about this many bytes: one argument for a whole batch of
# 20 KB records (N = 5,000) cost the client twice what one per record did (loadtest/bench/writer_cost.py),
# copying megabytes once more; below it, small records share an argument and its packing.
_BLOB_BYTES = 64 * 1024


def _joined(parts: list[bytes]) -> tuple[str, bytes]:
    """The (lengths, concatenation) argument pair the scripts' `split` cuts back into `parts`."""
    return " ".join([str(len(part)) for part in parts]), b"".join(parts)


def _blobs(entries: list[Pending]) -> list[bytes | str]:
    """(lengths, concatenated records) argument pairs, each of about `_BLOB_BYTES` or one record."""
    arguments: list[bytes | str] = []
    chunk: list[bytes] = []
    size = 0
    for entry in entries:
        if chunk and size + len(entry.data) > _BLOB_BYTES:
            arguments += _joined(chunk)
            chunk, size = [], 0
        chunk.append(entry.data)
        size += len(entry.data)
    if chunk:
        arguments += _joined(chunk)
    return arguments


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

    async def ping(self) -> None:
        """Raise RedisError/OSError when Redis does not answer."""
        await self._redis.ping()

    async def write(self, batch: list[Pending]) -> WriteResult:
        pipe = self._redis.pipeline(transaction=False)
        by_shard: dict[str, list[Pending]] = {}
        by_bucket: dict[int, list[Pending]] = {}
        for entry in batch:
            by_shard.setdefault(entry.shard, []).append(entry)
            by_bucket.setdefault(decision_index_bucket(entry.time, self._index_seconds), []).append(entry)
        trim = self._trim_args()
        for shard, entries in by_shard.items():
            ids = " ".join([entry.entry_id for entry in entries])
            pipe.eval(_APPEND, 1, shard, *trim, decision_record.STREAM_FIELD, ids, *_blobs(entries))
        for bucket, entries in by_bucket.items():
            lengths, requests = _joined([entry.request_id.encode() for entry in entries])
            # repr: the float unrounded, as the feedback script reads it back
            times = " ".join([repr(entry.time) for entry in entries])
            expire_at = (bucket + 2) * self._index_seconds
            key = decision_index_key(self._stream, bucket)
            pipe.eval(_INDEX, 1, key, expire_at, lengths, requests, times)
        pipe.sadd(decision_shards_key(self._stream), *by_shard)  # after the appends: see the module text
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, ResponseError):
                raise result  # e.g. OOM: not (all) written; the caller spools and replays the batch
        return WriteResult(sum(int(result) for result in results[: len(by_shard)]))

    def _trim_args(self) -> tuple[str, str]:
        if self._trim is None:
            return "", ""
        if self._trim.strategy == "maxlen":
            return "MAXLEN", str(int(self._trim.threshold))
        return "MINID", f"{int(time.time() * 1000 - self._trim.threshold * 1000)}"
