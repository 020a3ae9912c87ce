"""The archiver against real Redis and real Parquet files: records survive the trip field for field, a
poison entry goes to the dead-letter stream while the rest goes on, the streams are trimmed behind the
slowest group, and Redis stays bounded while the service logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import redis
from fastapi.testclient import TestClient

from archive.archiver import Archiver
from contracts import decision_record, feedback_record
from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord
from contracts.lake import DEAD_FIELDS_FIELD, DEAD_REASON_FIELD, dataset_files, dead_letter_stream, from_row
from contracts.packed_floats import to_lists
from contracts.streams import decision_shard, decision_shards_key
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig
from service.settings import Settings
from tests.feedback_posting import post_feedback
from tests.redis_streams import stream_entries, stream_length, the_shard, wait_for_stream


def _rank(client: TestClient, make_request: Callable[..., dict[str, Any]], n: int, candidates: int = 30) -> list[str]:
    ids = []
    for _ in range(n):
        answer = client.post("/v1/rank", json=make_request(n_candidates=candidates, k=3))
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["request_id"])
    return ids


def test_a_record_survives_stream_archive_and_join_field_for_field(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    ids = _rank(client, make_request, 4)
    for request_id in ids[:2]:
        post_feedback(client, request_id, {"watch_time": 2.0, "like": 1.0})
    stored = {
        decision_record.decode(fields[decision_record.STREAM_FIELD]).request_id: fields[decision_record.STREAM_FIELD]
        for _, fields in wait_for_stream(redis_client, settings.decision_stream, 4)
    }
    feedback_stored = [
        fields[feedback_record.STREAM_FIELD] for _, fields in redis_client.xrange(settings.feedback_stream)
    ]

    archiver = make_archiver()
    assert archiver.drain() == 4 + 2

    # Read back with pyarrow (hive partitions) and with the DuckDB join: the encoded records are the stored bytes.
    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    rebuilt = {r["request_id"]: decision_record.encode(from_row(r, DecisionRecord)) for r in table.to_pylist()}
    assert rebuilt == stored
    feedback_rows = ds.dataset(lake / "feedback", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(feedback_record.encode(from_row(r, FeedbackRecord)) for r in feedback_rows) == sorted(feedback_stored)

    result = join_lake(
        lake, JoinConfig(window_seconds=600, weights={"watch_time": 1.0, "like": 8.0}), time.time() + 601
    )
    assert {j.decision.request_id: decision_record.encode(j.decision) for j in result.joined} == stored
    assert {j.decision.request_id: (j.reward, j.events) for j in result.joined} == {
        ids[0]: (10.0, 1),
        ids[1]: (10.0, 1),
        ids[2]: (0.0, 0),
        ids[3]: (0.0, 0),
    }
    # Hive layout: policy and hour in the path, row groups written whole, nothing left in the streams.
    (path,) = dataset_files(lake, "decisions")
    assert path.parent.parent.name == "policy=demo" and path.parent.name.startswith("hour=")
    assert "policy" not in pq.read_schema(path).names
    assert (
        stream_length(redis_client, settings.decision_stream) == 0 and redis_client.xlen(settings.feedback_stream) == 0
    )


def test_a_schema_2_record_archives_into_the_same_float_columns_and_reads_back_as_the_float32_arrays(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    """A record an older worker wrote (schema 2: float lists) and a packed one land in one file with
    list<double> float columns, the type every earlier lake file has, and read back as the same arrays."""
    (request_id,) = _rank(client, make_request, 1)
    ((_, fields),) = wait_for_stream(redis_client, settings.decision_stream, 1)
    packed = decision_record.decode(fields[decision_record.STREAM_FIELD])
    assert packed.schema_version == decision_record.SCHEMA_VERSION == 4
    old = {**msgspec.to_builtins(packed, builtin_types=(bytes,), enc_hook=to_lists), "schema_version": 2}
    old["request_id"] = "written-by-schema-2"
    redis_client.xadd(settings.decision_stream, {decision_record.STREAM_FIELD: msgspec.msgpack.encode(old)})

    assert make_archiver().drain() == 2
    (path,) = dataset_files(lake, "decisions")
    columns = pq.read_schema(path)
    fusion = columns.field("fusion").type
    assert fusion.field("state").type == pa.list_(pa.float64())
    assert columns.field("stages").type.value_type.field("observation").type == pa.list_(pa.float64())
    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    rows = {r["request_id"]: from_row(r, DecisionRecord) for r in table.to_pylist()}
    read_old = rows["written-by-schema-2"]
    assert read_old.schema_version == 2 and read_old.fusion.state.dtype == np.float32
    assert decision_record.encode(rows[request_id]) == fields[decision_record.STREAM_FIELD]  # byte for byte
    same = msgspec.structs.replace(read_old, schema_version=decision_record.SCHEMA_VERSION, request_id=request_id)
    assert decision_record.as_builtins(same) == decision_record.as_builtins(packed)


def test_a_poison_entry_is_dead_lettered_with_its_reason_and_the_reader_goes_on(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    _rank(client, make_request, 2)
    wait_for_stream(redis_client, settings.decision_stream, 2)
    # What the issue saw: a record whose float came out as null (in whichever codec the stream holds), and
    # an entry without the record field; then two good ones.
    stored = stream_entries(redis_client, settings.decision_stream)[0][1][decision_record.STREAM_FIELD]
    codec: Any = msgspec.json if stored[:1] == b"{" else msgspec.msgpack
    document = codec.decode(stored)
    if isinstance(document, list):  # schema 4: a msgpack array in PackedRecord's field order
        fields = decision_record.PackedRecord.__struct_fields__
        document[fields.index("request_id")], document[fields.index("novelty")] = "poisoned", None
    else:
        document |= {"request_id": "poisoned", "novelty": None}
    poisoned = codec.encode(document)
    redis_client.xadd(settings.decision_stream, {decision_record.STREAM_FIELD: poisoned})
    redis_client.xadd(settings.decision_stream, {b"unexpected": b"\xff"})
    _rank(client, make_request, 2)
    wait_for_stream(redis_client, settings.decision_stream, 4)  # the service's shard; the poison is in the base stream

    archiver = make_archiver()
    assert archiver.drain() == 4

    dead = redis_client.xrange(dead_letter_stream(settings.decision_stream))
    assert len(dead) == 2
    reasons = [fields[DEAD_REASON_FIELD].decode() for _, fields in dead]
    assert "novelty" in reasons[0] and "KeyError" in reasons[1]
    assert msgspec.msgpack.decode(dead[0][1][DEAD_FIELDS_FIELD]) == {decision_record.STREAM_FIELD: poisoned}
    assert archiver.counters.dead_lettered == 2
    assert redis_client.xpending(settings.decision_stream, "archiver")["pending"] == 0
    assert stream_length(redis_client, settings.decision_stream) == 0  # nothing left behind, nothing blocks
    assert redis_client.xlen(settings.decision_stream) == 0
    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 4 and "poisoned" not in table.column("request_id").to_pylist()


def test_streams_are_trimmed_behind_the_slowest_group_and_nothing_unread_goes(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
) -> None:
    _rank(client, make_request, 6)
    entries = wait_for_stream(redis_client, settings.decision_stream, 6)
    stream = the_shard(redis_client, settings.decision_stream)
    redis_client.xgroup_create(stream, "trainer", id="0")  # a second group that lags

    archiver = make_archiver()
    assert archiver.drain() == 6
    assert redis_client.xlen(stream) == 6  # archived, but the trainer has read none of it

    read = redis_client.xreadgroup("trainer", "t", {stream: ">"}, count=4)
    redis_client.xack(stream, "trainer", *[entry_id for entry_id, _ in read[0][1][:3]])  # the 4th stays pending
    _rank(client, make_request, 1)
    wait_for_stream(redis_client, settings.decision_stream, 7)
    archiver.drain()

    left = [entry_id for entry_id, _ in redis_client.xrange(stream)]
    assert left == [entry_id for entry_id, _ in entries[3:]] + [left[-1]] and len(left) == 4


def test_redis_memory_stays_bounded_while_the_service_logs_and_the_archiver_runs(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    archiver = make_archiver()
    logged_bytes, peak_stream_bytes, before = 0, 0, int(redis_client.info("memory")["used_memory"])
    for round_ in range(8):
        _rank(client, make_request, 25, candidates=1000)
        entries = wait_for_stream(redis_client, settings.decision_stream, 25)
        logged_bytes += sum(len(fields[decision_record.STREAM_FIELD]) for _, fields in entries)
        shard = the_shard(redis_client, settings.decision_stream)
        peak_stream_bytes = max(peak_stream_bytes, int(redis_client.memory_usage(shard) or 0))
        archiver.drain()
        assert stream_length(redis_client, settings.decision_stream) == 0, f"round {round_}"
    grown = int(redis_client.info("memory")["used_memory"]) - before

    # The stream never held more than one round, and Redis grew by the per-request keys, not by the records.
    assert archiver.counters.archived["decisions"] == 200
    assert peak_stream_bytes < logged_bytes / 4
    assert grown < logged_bytes / 10, (grown, logged_bytes)


def test_every_shard_of_the_decision_stream_is_archived_and_trimmed(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    make_archiver: Callable[..., Archiver],
    lake: Path,
) -> None:
    _rank(client, make_request, 1)
    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    base = settings.decision_stream
    served_shard = the_shard(redis_client, base)  # the service's own, before the producers below add theirs
    shards = [decision_shard(base, "demo", producer) for producer in ("host-1-a", "host-2-b")]
    archiver = make_archiver()
    archiver.drain()  # the base stream's record; then producers register shards and append to them
    for i, shard in enumerate(shards):
        redis_client.sadd(decision_shards_key(base), shard)
        for j in range(3):
            copy = msgspec.structs.replace(record, request_id=f"shard{i}-{j}")
            redis_client.xadd(shard, {decision_record.STREAM_FIELD: decision_record.encode(copy)})

    assert archiver.drain() == 6

    table = ds.dataset(lake / "decisions", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("request_id").to_pylist()) == sorted(
        [record.request_id] + [f"shard{i}-{j}" for i in range(2) for j in range(3)]
    )
    assert sorted(set(table.column("_stream").to_pylist())) == sorted([served_shard, *shards])
    assert [redis_client.xlen(shard) for shard in shards] == [0, 0]
