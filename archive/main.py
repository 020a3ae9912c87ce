"""`cascade archive`: run the archiver from settings until stopped (SIGTERM/SIGINT), or bounded."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from archive.archiver import ArchiveConfig, ArchiveCounters, Archiver
from archive.connect import connect
from archive.settings import ArchiveSettings
from archive.sources import service_sources


def build_archiver(settings: ArchiveSettings) -> Archiver:
    """An archiver for the streams and lake the settings name."""
    if settings.redis_url is None:
        raise ValueError("the archiver needs REDIS_URL (the embedded Redis is started by `cascade serve`)")
    client = connect(settings.redis_url, settings.redis_cluster)
    config = ArchiveConfig(
        lake=settings.lake,
        group=settings.group,
        consumer=settings.consumer,
        read_batch=settings.read_batch,
        flush_bytes=settings.flush_bytes,
        flush_seconds=settings.flush_seconds,
        row_group_rows=settings.row_group_rows,
        claim_idle_ms=settings.claim_idle_ms,
        trim=settings.trim,
        retire_idle_seconds=settings.retire_idle_seconds or None,  # 0: never
        retire_every_seconds=settings.retire_every_seconds,
    )
    return Archiver(client, service_sources(client, settings.decision_stream, settings.feedback_stream), config)


def run(settings: ArchiveSettings, once: bool = False, max_seconds: float | None = None) -> ArchiveCounters:
    """Archive until SIGTERM/SIGINT (writing what is buffered first), `max_seconds`, or, with `once`, until
    the streams hold nothing unarchived."""
    archiver = build_archiver(settings)
    if once:
        archiver.drain(max_seconds)
        return archiver.counters
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        archiver.run(stop, max_seconds, settings.poll_seconds)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return archiver.counters
