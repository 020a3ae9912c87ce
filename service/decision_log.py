"""The decision log: the request path enqueues, a background writer pipelines XADDs to Redis.

A response never waits on Redis. When Redis refuses a batch the writer keeps it and retries,
so a Redis outage shorter than the queue's capacity loses nothing; records that find the
queue full are counted as dropped (visible in /readyz and /metrics). A durable spool for
longer outages is the next step (issue 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service import decision_record
from service.decision_record import DecisionRecord
from service.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class LogCounters:
    enqueued: int = 0
    written: int = 0
    dropped: int = 0
    failed_writes: int = 0


class DecisionLog:
    """Bounded in-memory queue in front of a Redis Stream."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        metrics: Metrics,
        capacity: int = 10_000,
        batch_size: int = 256,
        retry_seconds: float = 0.5,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._metrics = metrics
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=capacity)
        self._batch_size = batch_size
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.counters = LogCounters()
        self.redis_healthy = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def append(self, record: DecisionRecord) -> None:
        """Queue one record without waiting. Safe from any thread: requests are served in a threadpool."""
        data = decision_record.encode(record)  # encode in the caller's thread, off the event loop
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._put(data, record.request_id)
        else:
            self._loop.call_soon_threadsafe(self._put, data, record.request_id)

    def _put(self, data: bytes, request_id: str) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.counters.dropped += 1
            self._metrics.log_dropped.inc()
            log.error("decision log queue full: dropped record %s", request_id)
            return
        self.counters.enqueued += 1
        self._metrics.log_queue_depth.set(self._queue.qsize())

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        """Start the writer on the running event loop (the loop that owns the queue)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued (up to `timeout`), then stop the writer."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.error("decision log: %d records not written at shutdown", self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_until_done(batch)
            for _ in batch:
                self._queue.task_done()
            self._metrics.log_queue_depth.set(self._queue.qsize())

    async def _write_until_done(self, batch: list[bytes]) -> None:
        """XADD the batch in one pipeline; on failure keep it and retry, never drop it."""
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for data in batch:
                        pipe.xadd(self._stream, {decision_record.STREAM_FIELD: data})
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self.counters.failed_writes += 1
                self._metrics.log_write_failures.inc()
                if self.redis_healthy:
                    log.warning("decision log: Redis write failed, retrying: %s", exc)
                self.redis_healthy = False
                await asyncio.sleep(self._retry_seconds)
                continue
            self.redis_healthy = True
            self.counters.written += len(batch)
            self._metrics.log_written.inc(len(batch))
            return

    def state(self) -> dict[str, int | str]:
        """Counters and health for /readyz."""
        return {
            "status": "ok" if self.redis_healthy and self.counters.dropped == 0 else "degraded",
            "queued": self.depth,
            "pending": self.counters.enqueued - self.counters.written,  # queued or in the writer's hands
            "written": self.counters.written,
            "dropped": self.counters.dropped,
            "failed_writes": self.counters.failed_writes,
        }
