"""The decision log loses nothing: Redis stopped mid-burst, then restarted; the spool on its own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from pipelines.server import free_port, wait_ready
from service.app import create_app
from service.settings import Settings
from service.spool import Spool, read_records
from tests.redis_servers import RestartableRedis
from tests.redis_streams import stream_entries, stream_length


def _stream_ids(url: str, stream: str, want: int, timeout: float = 20.0) -> list[str]:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while stream_length(client, stream) < want and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = stream_entries(client, stream)
    ids = [decision_record.decode(f[decision_record.STREAM_FIELD]).request_id for _, f in entries]
    client.close()
    return ids


def test_redis_down_mid_burst_loses_no_record_and_keeps_order(
    settings: Settings, own_redis: RestartableRedis, make_request: Callable[..., dict[str, Any]]
) -> None:
    configured = settings.model_copy(update={"redis_url": own_redis.url, "log_retry_seconds": 0.05})
    bodies = [make_request(n_candidates=50, k=3) for _ in range(6)]
    served: list[str] = []
    with TestClient(create_app(configured)) as client:

        def burst(count: int) -> None:
            for i in range(count):
                response = client.post("/v1/rank", json=bodies[i % len(bodies)])
                assert response.status_code == 200
                served.append(response.json()["request_id"])

        burst(20)
        own_redis.stop()
        burst(30)
        degraded = client.get("/readyz").json()
        own_redis.start()
        stored = _stream_ids(own_redis.url, configured.decision_stream, len(served))
        recovered = client.get("/readyz").json()

    assert degraded["ready"] is True
    assert degraded["decision_log"]["status"] == "degraded"
    assert stored == served  # every record, exactly once, in the order served
    assert recovered["decision_log"]["spooled"] >= 1
    assert recovered["decision_log"]["replayed"] == recovered["decision_log"]["spooled"]
    assert recovered["decision_log"]["dropped"] == 0
    assert recovered["decision_log"]["spool_bytes"] == 0


def test_shutdown_while_redis_is_down_spools_and_the_next_worker_replays(
    settings: Settings, own_redis: RestartableRedis, make_request: Callable[..., dict[str, Any]]
) -> None:
    configured = settings.model_copy(
        update={"redis_url": own_redis.url, "log_retry_seconds": 0.05, "log_flush_seconds": 0.5}
    )
    own_redis.stop()
    with TestClient(create_app(configured)) as client:
        served = [
            client.post("/v1/rank", json=make_request(n_candidates=30, k=2)).json()["request_id"] for _ in range(8)
        ]
    spools = list(configured.log_spool_dir.glob("*.spool"))
    assert len(spools) == 1
    assert len(list(read_records(spools[0]))) == 8

    own_redis.start()
    with TestClient(create_app(configured)) as client:
        stored = _stream_ids(own_redis.url, configured.decision_stream, 8)
        while (state := client.get("/readyz").json()["decision_log"])["replayed"] < 8:
            time.sleep(0.02)

    assert stored == served
    assert list(configured.log_spool_dir.glob("*.spool")) == []
    # The 8 replayed records were the dead worker's, not this one's: nothing of this worker is pending.
    assert state["written"] == 8
    assert state["pending"] == 0


def test_spool_keeps_order_enforces_its_limit_and_survives_a_torn_tail(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "a.spool", max_bytes=4 + 3 + 4 + 3 + 4 + 1)
    dropped = spool.append([b"one", b"two", b"three"])

    assert dropped == 1
    assert [data for _, data in spool.records()] == [b"one", b"two"]
    first_end = next(spool.records())[0]
    spool.consume(first_end)
    assert [data for _, data in spool.records()] == [b"two"]
    with (tmp_path / "a.spool").open("ab") as handle:
        handle.write(b"\x00\x00\x00\x09par")  # a crash mid-append
    assert [data for _, data in read_records(tmp_path / "a.spool")] == [b"two"]
    with pytest.raises(BlockingIOError):
        Spool(tmp_path / "a.spool", max_bytes=100)  # owned by a live writer
    spool.close()


@pytest.mark.e2e
def test_sigterm_during_a_burst_loses_no_record(
    own_redis: RestartableRedis, store: Path, tmp_path: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    """A real server (cascade serve) stopped by SIGTERM under load: every answered request is logged."""
    import os
    import signal
    import sys
    import threading

    import httpx
    import orjson

    port = free_port()
    stream = "test:sigterm:decisions"
    env = {
        **os.environ,
        "REDIS_URL": own_redis.url,
        "CASCADE_DECISION_STREAM": stream,
        "CASCADE_ROUTING_NAMESPACE": "test:sigterm",
        "CASCADE_LOG_SPOOL_DIR": str(tmp_path / "spool"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cascade_cli", "serve", "--store", str(store), "--port", str(port)],
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    bodies = [orjson.dumps(make_request(n_candidates=200, k=5)) for _ in range(5)]
    answered: list[str] = []
    lock = threading.Lock()
    try:
        wait_ready(server, base)

        def client_loop(index: int) -> None:
            with httpx.Client(base_url=base, headers={"content-type": "application/json"}, timeout=5) as http:
                for i in range(400):
                    try:
                        response = http.post("/v1/rank", content=bodies[(index + i) % len(bodies)])
                    except httpx.HTTPError:
                        return  # the server stopped accepting: expected after SIGTERM
                    if response.status_code == 200:
                        with lock:
                            answered.append(response.json()["request_id"])

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        while len(answered) < 60:
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)

    stored = _stream_ids(own_redis.url, stream, len(answered))
    assert len(stored) == len(set(stored))
    assert set(answered) <= set(stored)
    assert len(answered) >= 60
