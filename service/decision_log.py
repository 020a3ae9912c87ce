"""The decision log: the request path enqueues, a background writer sends batches to a Redis Stream.

A response never waits on Redis. Each batch is one MULTI/EXEC of XADDs, so it lands whole or not at
all. When Redis refuses a batch, it goes to this worker's local spool (service/spool.py) and so does
everything after it, until the writer has replayed the spool to Redis in order; only then are new
batches written directly again. A record is dropped only when the spool's disk limit is hit, and
each drop is counted (metric, /readyz) and logged. At shutdown the queue is flushed to Redis or,
failing that, to the spool; the next worker to start replays spools left by workers that are gone.

Idempotent writes: a batch whose EXEC Redis applied but whose reply was lost (a dropped
connection, a timeout) looks refused, is spooled and would be replayed a second time; redis-py's own
retry of a failed command would resend it too. So each record is written by a Lua script that sets a
per-request key `<stream>:decision:<request_id>` (SET NX, value = the decision time) and appends only
when the key is new, in one atomic step: a replay or retry of an applied record is a no-op. Why this
and not the alternatives: stream ids derived from the request cannot be chosen (they must grow
across all workers of a stream); deduplicating on the consumer side would leave duplicates in the
stream for every reader (trainer, OPE, audits) to handle. The key costs ~100 bytes per decision for
its TTL (`decision_index_seconds`); it also tells the feedback route which request ids exist and when
they were served (unknown ids, late feedback). On Redis Cluster, give the stream a hash tag (e.g.
`{cascade}:decisions`): the keys embed the stream name, so the script's keys share one slot.

Trimming (`MAXLEN ~` or `MINID ~`) is applied by the same script, off by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts import decision_record
from contracts.decision_record import DecisionRecord
from contracts.streams import decision_key
from service.metrics import Metrics
from service.spool import Spool, spool_paths

log = logging.getLogger(__name__)


@dataclass
class LogCounters:
    enqueued: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    failed_writes: int = 0
    deduplicated: int = 0  # records a replay or retry found already in the stream


@dataclass(frozen=True)
class SpoolSettings:
    directory: Path
    max_bytes: int
    fsync: bool


@dataclass(frozen=True)
class StreamTrim:
    """Trim the stream at each append: keep about `threshold` entries (MAXLEN ~), or entries younger
    than `threshold` seconds (MINID ~, from the stream ids' milliseconds)."""

    strategy: Literal["maxlen", "minid"]
    threshold: float


class _Entry(NamedTuple):
    request_id: str
    time: float
    data: bytes  # the encoded record, what the stream and the spool hold


class _Identity(msgspec.Struct):
    """The two fields of a stored record the writer needs, decoded without the rest."""

    request_id: str
    time: float


_identity_msgpack = msgspec.msgpack.Decoder(_Identity)
_identity_json = msgspec.json.Decoder(_Identity)  # spools written before records were msgpack


def _identity(data: bytes) -> _Identity:
    return _identity_json.decode(data) if data[:1] == b"{" else _identity_msgpack.decode(data)


# KEYS: the stream, then one decision key per record. ARGV: key TTL, trim strategy ('', MAXLEN, MINID),
# trim threshold (entries, or age in ms), then (time, data) per record. Returns how many were appended.
# @FIELD@ is the record's stream field, filled in from the contract below.
_APPEND_NEW = """
local ttl, strategy, threshold = ARGV[1], ARGV[2], tonumber(ARGV[3])
local trim = {}
if strategy == 'MAXLEN' then
  trim = {'MAXLEN', '~', threshold}
elseif strategy == 'MINID' then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  trim = {'MINID', '~', string.format('%d', now_ms - threshold)}
end
local added = 0
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], ARGV[2 * i], 'NX', 'EX', ttl) then
    local args = {'XADD', KEYS[1]}
    for _, t in ipairs(trim) do args[#args + 1] = t end
    args[#args + 1] = '*'
    args[#args + 1] = '@FIELD@'
    args[#args + 1] = ARGV[2 * i + 1]
    redis.call(unpack(args))
    added = added + 1
  end
end
return added
""".replace("@FIELD@", decision_record.STREAM_FIELD.decode())


class DecisionLog:
    """Bounded in-memory queue in front of a Redis Stream, with a local spool behind it."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        metrics: Metrics,
        spool: SpoolSettings,
        capacity: int = 10_000,
        batch_size: int = 256,
        retry_seconds: float = 0.5,
        index_seconds: int = 24 * 3600,
        trim: StreamTrim | None = None,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._metrics = metrics
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue(maxsize=capacity)
        self._index_seconds = index_seconds
        self._trim_args = _trim_args(trim)
        self._script = redis.register_script(_APPEND_NEW)
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._spool_settings = spool
        self._prefix = hashlib.sha1(stream.encode()).hexdigest()[:10]
        self._spool: Spool | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._last_replay = 0.0
        self.counters = LogCounters()
        self.redis_healthy = True
        # Request ids this worker served whose records are not in Redis yet, and an event set after each
        # batch Redis took: feedback sent the instant a response arrives waits for its decision here.
        self._unlogged: set[str] = set()
        self._batch_written = asyncio.Event()
        self._handoff: list[_Entry] = []  # records from request threads, not yet on the queue
        self._handoff_lock = threading.Lock()

    def append(self, record: DecisionRecord) -> None:
        """Queue one record without waiting. Safe from any thread: requests are served in a threadpool."""
        # Encode in the caller's thread, off the event loop.
        entry = _Entry(record.request_id, record.time, decision_record.encode(record))
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._put(entry)
            return
        with self._handoff_lock:
            self._handoff.append(entry)
            first = len(self._handoff) == 1
        if first:  # one wake-up of the event loop per burst of records, not one per record
            self._loop.call_soon_threadsafe(self._take_handoff)

    def _take_handoff(self) -> None:
        """Queue what request threads handed over, in the order they did (event loop thread)."""
        with self._handoff_lock:
            entries, self._handoff = self._handoff, []
        for entry in entries:
            self._put(entry)

    def _put(self, entry: _Entry) -> None:
        self._unlogged.add(entry.request_id)
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            # The writer fell behind by a whole queue: spool directly rather than lose the record.
            self.counters.enqueued += 1
            self._to_spool([entry])
            return
        self.counters.enqueued += 1
        self._metrics.log_queue_depth.set(self._queue.qsize())

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        """Open this worker's spool and start the writer on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        directory = self._spool_settings.directory
        name = f"{self._prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}.spool"
        self._spool = Spool(directory / name, self._spool_settings.max_bytes, self._spool_settings.fsync)
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush the queue to Redis (or the spool) within `timeout`, spool the rest, stop the writer."""
        self._take_handoff()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        leftover = []
        while not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        if leftover:
            self._to_spool(leftover)
            log.warning("decision log: %d records spooled at shutdown", len(leftover))
        if self._spool is not None:
            self._spool.close()

    async def _run(self) -> None:
        await self._adopt_orphans()
        while True:
            try:
                # With records in the spool, wake up periodically to replay even when no traffic comes.
                wait = self._retry_seconds if self._spool_pending() else None
                first = await asyncio.wait_for(self._queue.get(), wait)
            except TimeoutError:
                await self._replay()
                continue
            batch = [first]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._deliver(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._metrics.log_queue_depth.set(self._queue.qsize())

    def _spool_pending(self) -> bool:
        return self._spool is not None and self._spool.size > 0

    async def _deliver(self, batch: list[_Entry]) -> None:
        if not self._spool_pending() and await self._write(batch):
            return
        self._to_spool(batch)  # behind what is already spooled: order is kept
        await self._replay()

    async def _write(self, batch: list[_Entry]) -> bool:
        """One atomic script call appending the records not yet in the stream; False if Redis refused it."""
        keys = [self._stream, *(decision_key(self._stream, entry.request_id) for entry in batch)]
        args: list[str | bytes | float | int] = [self._index_seconds, *self._trim_args]
        for entry in batch:
            args += [repr(entry.time), entry.data]  # repr: the float unrounded, as Lua reads it back
        try:
            added = int(await self._script(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            self.counters.failed_writes += 1
            self._metrics.log_write_failures.inc()
            if self.redis_healthy:
                log.warning("decision log: Redis write failed, spooling: %s", exc)
            self.redis_healthy = False
            return False
        if not self.redis_healthy:
            log.info("decision log: Redis is back")
        self.redis_healthy = True
        self.counters.written += len(batch)
        self._metrics.log_written.inc(len(batch))
        if added < len(batch):  # a replay or retry of records Redis had applied: skipped, not duplicated
            self.counters.deduplicated += len(batch) - added
            self._metrics.log_deduplicated.inc(len(batch) - added)
        self._unlogged.difference_update(entry.request_id for entry in batch)
        self._batch_written.set()
        self._batch_written = asyncio.Event()
        return True

    async def logged_soon(self, request_id: str, timeout: float) -> bool:
        """True when this worker served `request_id` and its record reached Redis within `timeout`;
        False at once for a request this worker has no unwritten record of."""
        self._take_handoff()
        if request_id not in self._unlogged:
            return False
        deadline = time.monotonic() + timeout
        while request_id in self._unlogged:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_written.wait(), remaining)
        return True

    def _to_spool(self, records: list[_Entry]) -> None:
        assert self._spool is not None
        dropped = self._spool.append([entry.data for entry in records])
        self.counters.spooled += len(records) - dropped
        self._metrics.log_spooled.inc(len(records) - dropped)
        if dropped:
            self.counters.dropped += dropped
            self._metrics.log_dropped.inc(dropped)
            log.error("decision log: spool full at %d bytes, dropped %d records", self._spool.size, dropped)

    async def _replay(self) -> None:
        """Send the spool to Redis in order, batch by batch; keep whatever Redis does not take."""
        if self._spool is None or not self._spool_pending():
            return
        if time.monotonic() - self._last_replay < self._retry_seconds:
            return
        self._last_replay = time.monotonic()
        await self._replay_file(self._spool)

    async def _replay_file(self, spool: Spool) -> bool:
        """True once the whole spool reached Redis; what reached it is cut from the spool."""
        consumed_offset, consumed_records = 0, 0
        chunk: list[_Entry] = []
        chunk_end = 0
        complete = True
        for offset, data in spool.records():
            identity = _identity(data)
            chunk.append(_Entry(identity.request_id, identity.time, data))
            chunk_end = offset
            if len(chunk) == self._batch_size:
                if not await self._write(chunk):
                    complete = False
                    break
                consumed_offset, consumed_records, chunk = chunk_end, consumed_records + len(chunk), []
        if complete and chunk:
            if await self._write(chunk):
                consumed_offset, consumed_records = chunk_end, consumed_records + len(chunk)
            else:
                complete = False
        if consumed_offset:
            spool.consume(consumed_offset)
            self.counters.replayed += consumed_records
            self._metrics.log_replayed.inc(consumed_records)
        return complete

    async def _adopt_orphans(self) -> None:
        """Replay spools of this stream left by workers that are gone (their lock is free)."""
        assert self._spool is not None
        for path in spool_paths(self._spool_settings.directory, self._prefix):
            if path == self._spool.path:
                continue
            try:
                orphan = Spool(path, self._spool_settings.max_bytes, self._spool_settings.fsync)
            except BlockingIOError:
                continue  # a live worker owns it
            try:
                if orphan.size and await self._replay_file(orphan):
                    log.info("decision log: replayed the spool %s of a finished worker", path.name)
            finally:
                orphan.close()

    def state(self) -> dict[str, int | str]:
        """Counters and health for /readyz."""
        healthy = self.redis_healthy and not self._spool_pending() and self.counters.dropped == 0
        return {
            "status": "ok" if healthy else "degraded",
            "queued": self.depth,
            "pending": self.counters.enqueued - self.counters.written - self.counters.dropped,
            "spool_bytes": self._spool.size if self._spool else 0,
            "written": self.counters.written,
            "spooled": self.counters.spooled,
            "replayed": self.counters.replayed,
            "dropped": self.counters.dropped,
            "failed_writes": self.counters.failed_writes,
            "deduplicated": self.counters.deduplicated,
        }


def _trim_args(trim: StreamTrim | None) -> list[str | int]:
    if trim is None:
        return ["", 0]
    if trim.strategy == "maxlen":
        return ["MAXLEN", int(trim.threshold)]
    return ["MINID", int(trim.threshold * 1000)]
