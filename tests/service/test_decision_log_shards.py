"""Per-producer shards with explicit ids, the crash window, order under overflow, orphans replayed live."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis as AsyncRedis

from contracts import decision_record
from contracts.decision_record import CandidateLog, DecisionRecord, FusionLog, Timings
from contracts.streams import decision_shard, decision_shards_key, parse_decision_shard
from pipelines.server import cascade_serve_command, free_port, start, stop, wait_ready
from service import shard_writer
from service.app import create_app
from service.log_entries import Pending, encode_spooled
from service.settings import Settings
from service.shard_writer import ShardWriter
from service.spool import Ledger, Spool
from tests.redis_servers import RestartableRedis
from tests.redis_streams import decision_shards, stream_entries, wait_for_stream


def _ids(entries: list[Any]) -> list[str]:
    return [decision_record.decode(fields[decision_record.STREAM_FIELD]).request_id for _, fields in entries]


def _serve(client: TestClient, make_request: Callable[..., dict[str, Any]], count: int) -> list[str]:
    body = make_request(n_candidates=20, k=2)
    return [client.post("/v1/rank", json=body).json()["request_id"] for _ in range(count)]


def _record(request_id: str) -> DecisionRecord:
    return DecisionRecord(
        schema_version=decision_record.SCHEMA_VERSION,
        request_id=request_id,
        time=time.time(),
        user_id="u",
        policy="demo",
        version="v",
        arm="control",
        k=1,
        user_features=np.array([0.5], np.float32),
        context=np.zeros(0, np.float32),
        candidates=CandidateLog(digest="0" * 64, ids=["a"]),
        stages=[],
        fusion=FusionLog(*(np.array([v], np.float32) for v in (0.5, 0.0, 1.0, 0.0, 0.0, 0.0)), names=["w"]),
        served_ids=["a"],
        served_scores=np.array([1.0], np.float32),
        log_prob=-1.0,
        novelty=0.1,
        explored=False,
        timings=Timings(1.0, 1.0, 2.0),
    )


def test_records_go_to_this_producers_shard_with_growing_ids(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    served = _serve(client, make_request, 6)
    entries = wait_for_stream(redis_client, settings.decision_stream, 6)
    producer = client.get("/readyz").json()["decision_log"]["producer"]

    (shard,) = decision_shards(redis_client, settings.decision_stream)
    # The hash tag is the policy's stream: every shard of one policy shares a Redis Cluster slot.
    assert shard == decision_shard(settings.decision_stream, "demo", producer)
    assert shard.startswith("{" + settings.decision_stream + ":demo}:")
    assert parse_decision_shard(shard).producer == producer
    assert _ids(entries) == served
    ids = [tuple(int(part) for part in entry_id.decode().split("-")) for entry_id, _ in entries]
    assert ids == sorted(set(ids))


def test_a_replayed_batch_is_refused_entry_by_entry(redis_url: str, settings: Settings) -> None:
    shard = decision_shard(settings.decision_stream, "demo", "replay-test")
    now = int(time.time() * 1000)
    batch = [
        Pending(i + 1, shard, f"{now}-{i}", f"r{i}", time.time(), decision_record.encode(_record(f"r{i}")))
        for i in range(5)
    ]

    async def scenario() -> tuple[int, int, int]:
        client = AsyncRedis.from_url(redis_url)
        writer = ShardWriter(client, settings.decision_stream, 60, None)
        first = await writer.write(batch[:3])
        again = await writer.write(batch)  # the first three again (a lost reply), then two new ones
        length = int(await client.xlen(shard))
        await client.aclose()
        return first.deduplicated, again.deduplicated, length

    assert asyncio.run(scenario()) == (0, 3, 5)


def test_a_batch_larger_than_one_argument_is_written_whole_in_order(settings: Settings, redis_url: str) -> None:
    """Records of a batch are concatenated into arguments of about 64 KB; a batch spanning several (and a
    record larger than one) arrives record for record, in order, each byte intact."""
    shard = decision_shard(settings.decision_stream, "demo", "blob-test")
    now = int(time.time() * 1000)
    sizes = [30_000, 30_000, 30_000, 100_000, 10, 50_000]
    batch = [
        Pending(i + 1, shard, f"{now}-{i}", f"b{i}", time.time(), bytes([i]) * size) for i, size in enumerate(sizes)
    ]

    async def scenario() -> tuple[list[bytes], tuple[Any, int]]:
        client = AsyncRedis.from_url(redis_url)
        await ShardWriter(client, settings.decision_stream, 60, None).write(batch)
        entries: Any = await client.xrange(shard)
        # A call whose lengths do not add up to its records is refused before anything is written.
        refused: Any = None
        try:
            await client.eval(
                shard_writer._APPEND, 1, shard, "", "", decision_record.STREAM_FIELD, f"{now + 1}-0", "5", b"1234"
            )
        except redis.ResponseError as error:
            refused = error
        length = await client.xlen(shard)
        await client.aclose()
        return [fields[decision_record.STREAM_FIELD] for _, fields in entries], (refused, length)

    stored, (refused, length) = asyncio.run(scenario())
    assert stored == [entry.data for entry in batch]
    assert isinstance(refused, redis.ResponseError) and "do not match" in str(refused)
    assert length == len(batch)


@pytest.mark.parametrize(
    ("window", "serve_then_wait"),
    [
        ({"log_window_records": 5}, 0.0),
        ({"log_window_records": 10_000, "log_window_ms": 100.0, "log_linger_ms": 20.0}, 0.5),
    ],
    ids=["past-the-records", "past-the-milliseconds"],
)
def test_past_the_window_records_go_to_the_spool_first_and_keep_their_order(
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    window: dict[str, Any],
    serve_then_wait: float,
) -> None:
    configured = settings.model_copy(update={**window, "log_retry_seconds": 0.05})
    with TestClient(create_app(configured)) as client:
        served = _serve(client, make_request, 3)
        wait_for_stream(redis_client, configured.decision_stream, 3)
        redis_client.client_pause(1500, all=False)  # Redis stalls every write for 1.5 s
        served += _serve(client, make_request, 30)
        time.sleep(serve_then_wait)
        stalled = client.get("/readyz").json()["decision_log"]
        entries = wait_for_stream(redis_client, configured.decision_stream, len(served), timeout=20)
        state = client.get("/readyz").json()["decision_log"]

    assert stalled["spills"] >= 1 and stalled["spooled"] >= 1  # the window held, by going to disk
    assert stalled["queued"] <= window["log_window_records"]
    assert _ids(entries) == served  # every record once, in the order served
    assert state["dropped"] == 0


def _orphan(directory: Path, stream: str, producer: str, answered: int, spooled: list[DecisionRecord]) -> str:
    """The files a worker killed with -9 leaves: a ledger and a spool, both unlocked."""
    prefix = hashlib.sha1(stream.encode()).hexdigest()[:10]
    directory.mkdir(parents=True, exist_ok=True)
    shard = decision_shard(stream, "demo", producer)
    ledger = Ledger(directory / f"{prefix}-{producer}.ledger")
    ledger.set(answered, len(spooled))
    ledger.close()
    spool = Spool(directory / f"{prefix}-{producer}.spool", 1 << 20)
    now = int(time.time() * 1000) - 10_000
    entries = [
        Pending(i + 1, shard, f"{now}-{i}", r.request_id, r.time, decision_record.encode(r))
        for i, r in enumerate(spooled)
    ]
    spool.append([encode_spooled(entry) for entry in entries])
    spool.close(remove_if_empty=False)
    return shard


def test_an_orphan_spool_is_replayed_when_redis_comes_back_while_a_worker_runs(
    settings: Settings, own_redis: RestartableRedis, make_request: Callable[..., dict[str, Any]]
) -> None:
    configured = settings.model_copy(
        update={"redis_url": own_redis.url, "log_retry_seconds": 0.05, "log_orphan_seconds": 0.1}
    )
    records = [_record(f"orphan-{i}") for i in range(7)]
    with TestClient(create_app(configured)) as client:
        _serve(client, make_request, 2)
        own_redis.stop()
        shard = _orphan(configured.log_spool_dir, configured.decision_stream, "deadhost-1-0badf00d", 10, records)
        deadline = time.monotonic() + 20
        while (waiting := client.get("/readyz").json()["decision_log"])["orphan_spools"] != 1:
            assert time.monotonic() < deadline, waiting
            time.sleep(0.05)
        own_redis.start()  # the worker was already running: no restart replays this spool
        after = redis.Redis.from_url(own_redis.url)
        deadline = time.monotonic() + 20
        while int(after.xlen(shard)) < len(records):
            assert time.monotonic() < deadline, "the orphan spool was never replayed"
            time.sleep(0.05)
        while (state := client.get("/readyz").json()["decision_log"])["orphan_spools"]:
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        metrics = client.get("/metrics").text

    assert _ids(stream_entries(after, shard)) == [r.request_id for r in records]
    assert bytes(shard, "utf-8") in after.smembers(decision_shards_key(configured.decision_stream))
    after.close()
    assert waiting["status"] == "degraded"
    assert state["lost_on_crash"] == 3  # answered 10, only 7 were durable
    assert "cascade_decision_log_lost_on_crash_total 3.0" in metrics
    assert [p.name for p in configured.log_spool_dir.glob("*") if "deadhost" in p.name] == []


@pytest.mark.e2e
def test_kill_9_loses_at_most_the_window_and_the_next_start_reports_how_many(
    own_redis: RestartableRedis, store: Path, tmp_path: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    """A real worker killed with -9 while Redis stalls its writes: what it answered but had not made durable
    is at most the window, and the next worker to start counts exactly that many as lost."""
    stream = "test:kill9:decisions"
    window = 20
    env = {
        "REDIS_URL": own_redis.url,
        "CASCADE_DECISION_STREAM": stream,
        "CASCADE_ROUTING_NAMESPACE": "test:kill9",
        "CASCADE_LOG_SPOOL_DIR": str(tmp_path / "spool"),
        "CASCADE_LOG_WINDOW_RECORDS": str(window),
        "CASCADE_LOG_WINDOW_MS": "600000",
        "CASCADE_LOG_ORPHAN_SECONDS": "0.2",
    }
    body = make_request(n_candidates=30, k=3)
    control = redis.Redis.from_url(own_redis.url)
    answered: list[str] = []

    def serve(base: str, count: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(count):
                response = http.post("/v1/rank", json=body)
                assert response.status_code == 200
                answered.append(response.json()["request_id"])

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = start(cascade_serve_command(store, port, workers=1), env, tmp_path / "first.log")
    try:
        wait_ready(first, base)
        serve(base, 5)
        wait_for_stream(control, stream, 5)
        control.client_pause(60_000, all=False)  # every write now stalls
        serve(base, 3 * window)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        control.client_unpause()
        stop(first)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    second = start(cascade_serve_command(store, port, workers=1), env, tmp_path / "second.log")
    try:
        wait_ready(second, base)
        # Done when the dead worker's spool is replayed and its ledger counted: then every answered
        # record is stored or counted lost. How many were lost depends on timing: a write that times
        # out while Redis is paused spools what it held, so the count may be anything up to the window.
        deadline = time.monotonic() + 60
        while True:
            state = httpx.get(f"{base}/readyz").json()["decision_log"]
            stored = set(_ids(stream_entries(control, stream)))
            missing = [r for r in answered if r not in stored]
            if not state["orphan_spools"] and len(missing) == state["lost_on_crash"]:
                break
            assert time.monotonic() < deadline, (state, len(missing))
            time.sleep(0.1)
        metrics = httpx.get(f"{base}/metrics").text
    finally:
        stop(second)
    control.close()

    assert state["lost_on_crash"] <= window
    assert len(missing) == state["lost_on_crash"]  # the count is exact, not an estimate
    assert f"cascade_decision_log_lost_on_crash_total {float(len(missing))}" in metrics
    if missing:
        assert "answered decision records: lost" in (tmp_path / "second.log").read_text()


def test_the_hand_over_builds_pending_entries_in_their_field_order() -> None:
    # DecisionLog.append_encoded builds each Pending with tuple.__new__, which checks neither the count
    # nor the order of the fields: a field added to or moved in Pending must be changed there too.
    assert Pending._fields == ("seq", "shard", "entry_id", "request_id", "time", "data", "answered")
