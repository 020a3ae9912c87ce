"""Retiring shards of stopped workers (archive/retire.py) against real Redis and real Parquet files: a shard
goes only once it is archived, trimmed, unread by no group and idle; one that is written to again comes
back registered and is archived; a recreation racing the unregistering is registered again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as ds
import redis
from fastapi.testclient import TestClient

from archive.archiver import Archiver
from archive.main import build_archiver
from archive.retire import retire_idle_shards
from archive.settings import ArchiveSettings
from contracts import decision_record
from contracts.streams import decision_shard, decision_shards_key
from service.settings import Settings
from tests.archive.test_archiver import _rank
from tests.redis_streams import decision_shards, the_shard, wait_for_stream

HOUR_MS = 3_600_000


def _served_record(
    client: TestClient, make_request: Callable[..., dict[str, Any]], redis_client: redis.Redis, base: str
) -> bytes:
    """The stored bytes of one record the service logs for a request ranked now."""
    _rank(client, make_request, 1)
    ((_, fields),) = wait_for_stream(redis_client, base, 1)
    return bytes(fields[decision_record.STREAM_FIELD])


def _stopped_workers_shard(redis_client: redis.Redis, base: str, record: bytes, producer: str, age_ms: int) -> str:
    """A shard a worker that stopped `age_ms` ago left: registered, three records with its explicit ids."""
    shard = decision_shard(base, "demo", producer)
    last_ms = int(time.time() * 1000) - age_ms
    for seq in range(3):
        copy = msgspec.structs.replace(decision_record.decode(record), request_id=f"{producer}-{seq}")
        redis_client.xadd(shard, {decision_record.STREAM_FIELD: decision_record.encode(copy)}, id=f"{last_ms}-{seq}")
    redis_client.sadd(decision_shards_key(base), shard)
    return shard


def test_a_stopped_workers_shard_is_deleted_once_archived_and_idle_and_the_serving_ones_stay(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    base = settings.decision_stream
    record = _served_record(client, make_request, redis_client, base)
    serving = the_shard(redis_client, base)
    stopped = _stopped_workers_shard(redis_client, base, record, "host-9-dead", 2 * HOUR_MS)
    recent = _stopped_workers_shard(redis_client, base, record, "host-8-quiet", 60_000)

    archiver = make_archiver(retire_idle_seconds=3600.0)
    assert archiver.drain() == 7

    assert not redis_client.exists(stopped) and decision_shards(redis_client, base) == sorted([serving, recent])
    assert archiver.counters.retired == 1
    assert [redis_client.xlen(name) for name in (serving, recent)] == [0, 0]  # archived and trimmed, still there
    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    assert sum(name.startswith("host-9-dead") for name in table.column("request_id").to_pylist()) == 3
    _rank(client, make_request, 1)  # the archiver goes on over what is left
    wait_for_stream(redis_client, base, 1)
    assert archiver.drain() == 1


def test_a_shard_is_kept_while_a_group_holds_one_of_its_entries_or_it_holds_unarchived_ones(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
) -> None:
    base = settings.decision_stream
    record = _served_record(client, make_request, redis_client, base)
    read_by_trainer = _stopped_workers_shard(redis_client, base, record, "host-7-dead", 2 * HOUR_MS)
    redis_client.xgroup_create(read_by_trainer, "trainer", id="0")
    redis_client.xreadgroup("trainer", "t", {read_by_trainer: ">"}, count=1)  # one entry pending there
    unarchived = _stopped_workers_shard(redis_client, base, record, "host-6-dead", 2 * HOUR_MS)

    assert retire_idle_shards(redis_client, base, 3600.0) == []  # nobody archived anything yet
    archiver = make_archiver(retire_idle_seconds=3600.0)
    archiver.drain()
    assert archiver.counters.retired == 1 and not redis_client.exists(unarchived)
    assert redis_client.xlen(read_by_trainer) == 3  # archived, but the trainer still holds its first

    redis_client.xreadgroup("trainer", "t", {read_by_trainer: ">"})
    redis_client.xack(read_by_trainer, "trainer", *[entry_id for entry_id, _ in redis_client.xrange(read_by_trainer)])
    assert archiver.retire() == [read_by_trainer]  # every group is done: no trim needed first
    assert not redis_client.exists(read_by_trainer) and read_by_trainer not in decision_shards(redis_client, base)


def test_a_retired_shard_written_to_again_is_registered_again_and_archived(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
) -> None:
    base = settings.decision_stream
    _rank(client, make_request, 2)
    wait_for_stream(redis_client, base, 2)
    serving = the_shard(redis_client, base)
    archiver = make_archiver()
    assert archiver.drain() == 2
    time.sleep(0.1)
    # Another archiver of the group retires the serving worker's own shard, idle for longer than its bound.
    assert retire_idle_shards(redis_client, base, 0.05) == [serving]
    assert decision_shards(redis_client, base) == [] and not redis_client.exists(serving)

    _rank(client, make_request, 3)  # the service's writer recreates its shard and registers it again
    wait_for_stream(redis_client, base, 3)
    assert decision_shards(redis_client, base) == [serving]
    assert archiver.drain() == 3  # its group went with the shard: a fresh one reads it from its start


class _ProducerBetweenDeleteAndUnregister(redis.Redis):
    """A real client whose SREM lets a producer's batch land first: its append recreates the shard the
    retiring script just deleted, and its registration (a no-op: still registered) precedes our SREM."""

    def __init__(self, url: str, record: bytes) -> None:
        super().__init__(connection_pool=redis.ConnectionPool.from_url(url))
        self._record = record

    def srem(self, name: str, *values: Any) -> Any:
        for shard in values:
            self.xadd(shard, {decision_record.STREAM_FIELD: self._record})
            self.sadd(name, shard)
        return super().srem(name, *values)


def test_a_shard_recreated_while_it_is_unregistered_stays_registered(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    base = settings.decision_stream
    record = _served_record(client, make_request, redis_client, base)
    shard = _stopped_workers_shard(redis_client, base, record, "host-5-dead", 2 * HOUR_MS)
    redis_client.xtrim(shard, maxlen=0)  # as if archived

    racing = _ProducerBetweenDeleteAndUnregister(settings.redis_url or "", record)
    assert retire_idle_shards(racing, base, 3600.0) == [shard]
    assert redis_client.xlen(shard) == 1 and shard in decision_shards(redis_client, base)


def test_an_idle_time_of_zero_keeps_every_shard(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    lake: Path,
) -> None:
    base = settings.decision_stream
    record = _served_record(client, make_request, redis_client, base)
    shard = _stopped_workers_shard(redis_client, base, record, "host-4-dead", 2 * HOUR_MS)
    redis_client.xtrim(shard, maxlen=0)  # as if archived
    archive_settings = ArchiveSettings(
        lake=lake, redis_url=settings.redis_url, decision_stream=base, retire_idle_seconds=0
    )

    assert build_archiver(archive_settings).retire() == []
    assert redis_client.exists(shard) and shard in decision_shards(redis_client, base)
