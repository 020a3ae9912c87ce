"""The decision log: requests hand records over, a background writer appends them to Redis Stream shards.

A response never waits on Redis. Each worker is a *producer* with its own shard per policy
(contracts/streams.py) and gives each record an explicit entry id `<ms>-<seq>` that only grows. So:

- **Idempotent by entry id.** A batch whose reply was lost (a dropped connection, a timeout) is
  replayed from the spool; Redis refuses each of its entries already applied ("equal or smaller than
  the target stream top item"), entry by entry, and they are counted as deduplicated. One pipelined
  round trip per batch (service/shard_writer.py): one EVAL per shard that XADDs the batch's records
  (a script for the client's CPU, not for atomicity; it touches only its shard, so the keys may live
  on any cluster slot), one HSET of the decision index (what the feedback route checks) per batch.
- **Few round trips.** The writer lingers `linger` seconds between batches, so one round trip carries
  every record answered meanwhile, and a request never wakes the event loop to hand its record over.
- **A bounded crash window.** At most `window.records` answered records, none older than
  `window.ms`, are held only in memory (the queue plus the batch in flight). Past either bound, all
  of them go to the local spool (fsync) in order, and the writer sends the spool to Redis before
  anything newer. A ledger beside the spool (service/spool.py) counts answered and durable records;
  after a kill -9 the next worker reads how many the crash lost, logs it and counts it
  (`cascade_decision_log_lost_on_crash`).
- **Order per producer.** Records become durable in the order they were answered: the spool holds
  the older part, the queue the newer; an overflow moves the queue behind the spool, never beside it.
- **Orphans.** Every `orphan_seconds` (and at start) the writer looks for spools and ledgers of workers
  that are gone (their lock is free): it counts their losses and replays their spools into their own
  shards whenever Redis takes them, not only at start-up. /readyz is degraded while one is pending.

A record is dropped only when the spool's disk limit is hit; each drop is counted and logged.
Trimming (`MAXLEN ~` or `MINID ~`) on append is off by default: the archiver trims behind its readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts import decision_record
from contracts.decision_record import PackedRecord
from contracts.streams import decision_shard, producer_name
from service.log_entries import Pending, decode_spooled, encode_spooled
from service.metrics import Metrics
from service.shard_writer import ShardWriter, StreamTrim
from service.spool import Ledger, Spool, ledger_paths

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
    lost_on_crash: int = 0  # answered records workers that crashed never made durable (found at adoption)
    spills: int = 0  # times the window was exceeded and the queue went to the spool
    batches: int = 0  # pipelined round trips that Redis took: records per round trip = written / batches


@dataclass(frozen=True)
class SpoolSettings:
    directory: Path
    max_bytes: int
    fsync: bool


@dataclass(frozen=True)
class LogWindow:
    """How much an answered-but-unwritten tail may hold before it goes to the spool."""

    records: int = 1000
    ms: float = 1000.0


class DecisionLog:
    """A bounded in-memory tail in front of this producer's Redis Stream shards, with a spool behind it."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        metrics: Metrics,
        spool: SpoolSettings,
        window: LogWindow | None = None,
        batch_size: int = 256,
        retry_seconds: float = 0.5,
        index_seconds: int = 24 * 3600,
        trim: StreamTrim | None = None,
        orphan_seconds: float = 5.0,
        linger_seconds: float = 0.1,
    ) -> None:
        self._stream = stream
        self._metrics = metrics
        self._window = window or LogWindow()
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._orphan_seconds = orphan_seconds
        self._linger = linger_seconds
        self._spool_settings = spool
        self._writer = ShardWriter(redis, stream, index_seconds, trim)
        self._prefix = hashlib.sha1(stream.encode()).hexdigest()[:10]
        self.producer = producer_name(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
        self._spool: Spool | None = None
        self._ledger: Ledger | None = None
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.counters = LogCounters()
        self.redis_healthy = True
        self.orphans_pending = 0
        # Answered records in order: handed over by request threads, then queued on the loop, then in flight.
        self._lock = threading.Lock()
        self._handoff: list[Pending] = []
        self._queue: deque[Pending] = deque()
        self._in_flight: list[Pending] = []
        self._in_flight_spooled = False
        self._answered = 0  # sequence number of the last record answered
        self._durable = 0  # every record up to this sequence number is in Redis or in the spool
        self._own_spooled = 0  # records of this worker in its own spool, not yet in Redis
        self._last_ms = 0
        self._last_seq = -1
        self._shards: dict[str, str] = {}
        self._wake = asyncio.Event()
        # Write without lingering while feedback waits for a record (how many wait) or the worker stops.
        self._waiting = 0
        self._stopping = False
        self._closed = False  # the writer's loop ends at its next pass, cancelled or not
        self._last_write = 0.0  # time.monotonic() of the last write's start
        # Request ids this worker served whose records are not in Redis yet, and an event set after each
        # batch Redis took: feedback sent the instant a response arrives waits for its decision here.
        self._unlogged: set[str] = set()
        self._batch_written = asyncio.Event()

    # --- the request side (any thread) ---

    def append(self, record: PackedRecord) -> None:
        """Hand one record over without waiting. Safe from any thread: requests are served in a threadpool."""
        self.append_encoded(record.policy, record.request_id, record.time, decision_record.encode_packed(record))

    def append_encoded(self, policy: str, request_id: str, decided: float, data: bytes) -> None:
        """Hand over a record encoded by `decision_record.encode_packed` (or `encoded_if_valid`), in the
        caller's thread, off the event loop. Every request runs this: it is kept to a few C calls."""
        shard = self._shards.get(policy) or self._shards.setdefault(
            policy, decision_shard(self._stream, policy, self.producer)
        )
        with self._lock:
            now_ms = int(time.time() * 1000)
            if now_ms > self._last_ms:
                self._last_ms, self._last_seq = now_ms, 0
            else:  # same millisecond, or the clock stepped back: the id still grows
                self._last_seq += 1
            self._answered = seq = self._answered + 1
            # tuple.__new__: Pending's own __new__ is a Python function, a call frame per record
            entry = (seq, shard, f"{self._last_ms}-{self._last_seq}", request_id, decided, data, time.monotonic())
            self._handoff.append(tuple.__new__(Pending, entry))
            if self._ledger is not None:
                self._ledger.set(seq, self._durable)
            # The writer collects the handoff every `linger` seconds on its own: a request does not wake the
            # event loop, except to keep the window when the handoff alone would reach it.
            urgent = len(self._handoff) + len(self._queue) >= self._window.records
        self.counters.enqueued += 1
        if self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._take_handoff()
        elif urgent:
            self._loop.call_soon_threadsafe(self._take_handoff)

    # --- the event loop side ---

    def _take_handoff(self) -> None:
        with self._lock:
            entries, self._handoff = self._handoff, []
        if not entries:
            return
        self._queue.extend(entries)
        self._unlogged.update(entry.request_id for entry in entries)
        if len(self._queue) + len(self._in_flight) > self._window.records:
            self._spill()
        self._metrics.log_queue_depth.set(len(self._queue))
        self._wake.set()

    def _tick(self) -> None:
        """Spill when the oldest record only in memory is older than the window allows."""
        assert self._loop is not None
        self._take_handoff()
        oldest = self._in_flight[0] if self._in_flight and not self._in_flight_spooled else None
        oldest = oldest or (self._queue[0] if self._queue else None)
        if oldest is not None and (time.monotonic() - oldest.answered) * 1000 > self._window.ms:
            self._spill()
        self._ticker = self._loop.call_later(self._window.ms / 4000, self._tick)

    def _spill(self) -> None:
        """Everything only in memory (batch in flight, then the queue) to the spool, in order."""
        entries = [] if self._in_flight_spooled else list(self._in_flight)
        self._in_flight_spooled = True
        entries += self._queue
        self._queue.clear()
        if not entries:
            return
        self._to_spool(entries)
        self.counters.spills += 1
        self._metrics.log_queue_depth.set(0)

    def _to_spool(self, entries: list[Pending]) -> None:
        assert self._spool is not None
        dropped = self._spool.append([encode_spooled(entry) for entry in entries])
        kept = len(entries) - dropped
        self.counters.spooled += kept
        self._own_spooled += kept
        self._metrics.log_spooled.inc(kept)
        if dropped:
            self.counters.dropped += dropped
            self._metrics.log_dropped.inc(dropped)
            self._unlogged.difference_update(entry.request_id for entry in entries[kept:])
            log.error("decision log: spool full at %d bytes, dropped %d records", self._spool.size, dropped)
        self._mark_durable(entries[-1].seq)  # a dropped record is counted as dropped, not as lost

    def _mark_durable(self, seq: int) -> None:
        with self._lock:
            self._durable = max(self._durable, seq)
            if self._ledger is not None:
                self._ledger.set(self._answered, self._durable)

    @property
    def depth(self) -> int:
        return len(self._queue) + len(self._in_flight) * (not self._in_flight_spooled)

    def start(self) -> None:
        """Open this worker's spool and ledger and start the writer on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        directory = self._spool_settings.directory
        name = f"{self._prefix}-{self.producer}"
        self._ledger = Ledger(directory / f"{name}.ledger")
        self._spool = Spool(directory / f"{name}.spool", self._spool_settings.max_bytes, self._spool_settings.fsync)
        self._mark_durable(0)
        self._wake = asyncio.Event()
        self._batch_written = asyncio.Event()
        self._take_handoff()
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")
        self._ticker = self._loop.call_later(self._window.ms / 4000, self._tick)

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is held to Redis within `timeout`, spool the rest, stop the writer."""
        self._take_handoff()
        deadline = time.monotonic() + timeout
        self._stopping = True  # no lingering from here on: what is held goes out now
        while (self._queue or self._in_flight or self._spool_pending()) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._ticker is not None:
            self._ticker.cancel()
        if self._task is not None:
            # The flag as well as the cancel: on Python 3.11, asyncio.wait_for (the writer's pause) can swallow
            # a cancellation that arrives as its wait ends (CPython gh-86296), and awaiting the task would
            # then hang shutdown for good. With the flag the loop ends at its next pass either way.
            self._closed = True
            self._wake.set()
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                log.error("decision log: the writer did not stop within %.1f s; leaving it", timeout)
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.error("decision log: the writer failed: %r", self._task.exception())
        held = len(self._queue) + len(self._in_flight) * (not self._in_flight_spooled)
        self._spill()
        if held:
            log.warning("decision log: %d records spooled at shutdown", held)
        if self._spool is not None:
            self._spool.close()
        if self._ledger is not None:
            # Nothing was lost; the ledger stays only with a spool still to replay (it names the producer).
            self._ledger.close(remove=self._spool is None or self._spool.size == 0)

    async def _run(self) -> None:
        try:  # health known from the start, not only after the first linger's write
            await self._writer.ping()
        except (RedisError, OSError) as exc:
            self.redis_healthy = False
            log.warning("decision log: Redis unreachable at start, records will be spooled: %s", exc)
        next_scan = 0.0
        while not self._closed:
            if time.monotonic() >= next_scan:
                await self._adopt_orphans()
                next_scan = time.monotonic() + self._orphan_seconds
            self._take_handoff()
            if self._spool_pending():
                assert self._spool is not None
                if not await self._replay(self._spool):
                    await self._pause(self._retry_seconds)
                continue
            # Linger: records answered meanwhile go out together, one round trip for many (Kafka's linger.ms),
            # counted from the last write's start, not from an empty queue: at 300 to 2,000 answers a second
            # the queue is hardly ever empty after a round trip, so batches were 4 to 8 records, and the
            # writer's fixed cost per round trip (measured: a batch of 8 costs the serving core 3 to 5x
            # per record what a batch of 200 does) was paid per few records.
            now = time.monotonic()
            if not self._queue:
                await self._pause(min(self._linger, max(next_scan - now, 0.0)))
                continue
            wait = min(self._last_write + self._linger, next_scan) - now
            hurry = self._waiting or self._stopping
            if wait > 0 and not hurry and len(self._queue) < self._batch_size:
                await self._pause(wait)
                continue
            self._last_write = now
            await self._write_queue_head()

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _write_queue_head(self) -> None:
        count = min(self._batch_size, len(self._queue))
        batch = [self._queue.popleft() for _ in range(count)]
        self._in_flight, self._in_flight_spooled = batch, False
        written = await self._write(batch)
        if not written and not self._in_flight_spooled:
            self._spill()  # this batch, then the queue behind it: order is kept
        self._in_flight, self._in_flight_spooled = [], False
        self._metrics.log_queue_depth.set(len(self._queue))

    def _spool_pending(self) -> bool:
        return self._spool is not None and self._spool.size > 0

    async def _write(self, batch: list[Pending]) -> bool:
        """One pipelined round trip for the batch; False if Redis did not take all of it."""
        try:
            result = await self._writer.write(batch)
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
        self.counters.batches += 1
        self._metrics.log_written.inc(len(batch))
        if result.deduplicated:  # a replay of records Redis had applied: refused by id, not duplicated
            self.counters.deduplicated += result.deduplicated
            self._metrics.log_deduplicated.inc(result.deduplicated)
        self._mark_durable(batch[-1].seq)
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
        self._waiting += 1  # no lingering while someone waits for a record
        self._wake.set()
        deadline = time.monotonic() + timeout
        try:
            while request_id in self._unlogged:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_written.wait(), remaining)
            return True
        finally:
            self._waiting -= 1

    async def _replay(self, spool: Spool) -> bool:
        """Send a spool to Redis in order, batch by batch; True once all of it is in; what is in is cut."""
        consumed_offset, consumed_records, consumed_lines = 0, 0, 0
        chunk: list[Pending] = []
        chunk_end, lines = 0, 0
        complete = True
        for offset, data in spool.records():
            lines += 1
            entry = decode_spooled(data)
            if entry is None:  # not an entry of this format: count it, never block on it
                self.counters.dropped += 1
                self._metrics.log_dropped.inc()
                log.error("decision log: unreadable record in spool %s dropped", spool.path.name)
            else:
                chunk.append(entry)
            chunk_end = offset
            if len(chunk) == self._batch_size:
                if not await self._write(chunk):
                    complete = False
                    break
                consumed_offset, consumed_records, chunk = chunk_end, consumed_records + len(chunk), []
                consumed_lines = lines
        if complete and chunk_end > consumed_offset:
            if not chunk or await self._write(chunk):
                consumed_offset, consumed_records = chunk_end, consumed_records + len(chunk)
                consumed_lines = lines
            else:
                complete = False
        if consumed_offset:
            spool.consume(consumed_offset)
            if spool is self._spool:  # an orphan's records were never this worker's to count
                self._own_spooled = max(self._own_spooled - consumed_lines, 0)
            self.counters.replayed += consumed_records
            self._metrics.log_replayed.inc(consumed_records)
        return complete and spool.size == 0

    async def _adopt_orphans(self) -> None:
        """Count the losses of workers that are gone (their ledger is unlocked) and replay their spools."""
        assert self._ledger is not None
        pending = 0
        for path in ledger_paths(self._spool_settings.directory, self._prefix):
            if path == self._ledger.path:
                continue
            try:
                ledger = Ledger(path)
            except BlockingIOError:
                continue  # a live worker owns it
            try:
                pending += not await self._adopt(ledger)
            finally:
                ledger.close(remove=not path.with_suffix(".spool").exists())
        self.orphans_pending = pending

    async def _adopt(self, ledger: Ledger) -> bool:
        """True once the orphan's spool is replayed (and removed)."""
        answered, _ = ledger.read()
        lost = ledger.lost
        if lost:
            self.counters.lost_on_crash += lost
            self._metrics.log_lost_on_crash.inc(lost)
            log.error(
                "decision log: a worker (%s) stopped without writing %d answered decision records: lost",
                ledger.path.stem,
                lost,
            )
            ledger.set(answered, answered)  # counted once
        spool_path = ledger.path.with_suffix(".spool")
        if not spool_path.exists():
            return True
        orphan = Spool(spool_path, self._spool_settings.max_bytes, self._spool_settings.fsync)
        try:
            complete = orphan.size == 0 or await self._replay(orphan)
            if complete and orphan.size == 0:
                log.info("decision log: replayed the spool %s of a finished worker", spool_path.name)
            return complete
        finally:
            orphan.close()

    def state(self) -> dict[str, int | str]:
        """Counters and health for /readyz."""
        healthy = (
            self.redis_healthy and not self._spool_pending() and self.counters.dropped == 0 and not self.orphans_pending
        )
        return {
            "status": "ok" if healthy else "degraded",
            "producer": self.producer,
            "queued": self.depth,
            # This worker's answered records not in Redis yet: handed over, queued or in flight, or in its
            # spool. Not enqueued − written: a replay of another worker's spool counts as written here.
            "pending": len(self._handoff) + self.depth + self._own_spooled,
            "spool_bytes": self._spool.size if self._spool else 0,
            "orphan_spools": self.orphans_pending,
            "written": self.counters.written,
            "spooled": self.counters.spooled,
            "replayed": self.counters.replayed,
            "dropped": self.counters.dropped,
            "failed_writes": self.counters.failed_writes,
            "deduplicated": self.counters.deduplicated,
            "lost_on_crash": self.counters.lost_on_crash,
            "spills": self.counters.spills,
            "batches": self.counters.batches,
        }
