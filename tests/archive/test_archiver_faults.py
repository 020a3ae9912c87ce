"""The archiver against a real redis-server that goes away and comes back: it waits, then archives on
from where it was, and nothing is lost or archived twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as ds
import redis
from fastapi.testclient import TestClient

from archive.archiver import ArchiveConfig, Archiver
from archive.connect import connect
from archive.sources import service_sources
from contracts import decision_record
from contracts.streams import decision_shard, decision_shards_key
from service.settings import Settings
from tests.archive.test_retire import _served_record
from tests.redis_servers import RestartableRedis


def _archived_ids(lake: Path, want: int, timeout_s: float = 30.0) -> list[str]:
    """Request ids in the lake once it holds `want` rows (hang guard: `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    ids: list[str] = []
    while time.monotonic() < deadline:
        if (lake / "decisions").exists():
            ids = (
                ds.dataset(lake / "decisions", format="parquet", partitioning="hive")
                .to_table()
                .column("request_id")
                .to_pylist()
            )
            if len(ids) >= want:
                break
        time.sleep(0.1)
    return sorted(ids)


def test_the_archiver_waits_out_a_redis_restart_and_archives_every_record_once(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    own_redis: RestartableRedis,
    tmp_path: Path,
) -> None:
    record = decision_record.decode(_served_record(client, make_request, redis_client, settings.decision_stream))
    writer = redis.Redis.from_url(own_redis.url)
    base = "faults:decisions"
    shard = decision_shard(base, "demo", "host-1-a")

    def append(first: int, count: int) -> None:
        for i in range(first, first + count):
            copy = msgspec.structs.replace(record, request_id=f"r{i}")
            writer.xadd(shard, {decision_record.STREAM_FIELD: decision_record.encode(copy)})
        writer.sadd(decision_shards_key(base), shard)

    lake = tmp_path / "lake"
    config = ArchiveConfig(lake, "archiver", "a-0", flush_seconds=0.2, claim_idle_ms=1000, retry_seconds=0.1)
    archiver = Archiver(connect(own_redis.url), service_sources(connect(own_redis.url), base, "faults:fb"), config)
    stop, failures = threading.Event(), []

    def run() -> None:
        try:
            archiver.run(stop, max_seconds=60, poll_seconds=0.05)
        except Exception as exc:  # the test reports whatever ended the run
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        append(0, 3)
        assert _archived_ids(lake, 3) == ["r0", "r1", "r2"]
        own_redis.stop()  # its append-only file keeps the stream: the archiver's group and what it acknowledged
        time.sleep(1.0)
        own_redis.start()
        append(3, 3)
        archived = _archived_ids(lake, 6)
    finally:
        stop.set()
        thread.join(timeout=30)

    assert not thread.is_alive() and failures == []
    assert archived == _archived_ids(lake, 6) == [f"r{i}" for i in range(6)]  # every record, none twice
    assert archiver.counters.redis_errors >= 1  # it did see Redis go away
    assert writer.xlen(shard) == 0  # and trimmed behind itself once Redis was back
