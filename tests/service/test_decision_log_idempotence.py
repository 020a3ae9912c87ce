"""A record Redis applied is never appended twice (lost replies, retries, replays); trimming is opt-in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import stream_entries, wait_for_stream
from tests.reply_dropping_proxy import ReplyDroppingProxy


@pytest.fixture
def proxy(redis_url: str) -> Iterator[ReplyDroppingProxy]:
    server = ReplyDroppingProxy(redis_url)
    yield server
    server.close()


def _served_ids(redis_client: redis.Redis, stream: str) -> list[str]:
    return [
        decision_record.decode(fields[decision_record.STREAM_FIELD]).request_id
        for _, fields in stream_entries(redis_client, stream)
    ]


def _wait_for_last(redis_client: redis.Redis, stream: str, last: str) -> list[str]:
    """The stream's request ids once the newest served record has reached it (trimming changes xlen)."""
    deadline = time.monotonic() + 20
    while (stored := _served_ids(redis_client, stream))[-1:] != [last]:
        assert time.monotonic() < deadline, "the last record never reached the stream"
        time.sleep(0.02)
    return stored


def _serve(client: TestClient, make_request: Callable[..., dict[str, Any]], count: int) -> list[str]:
    body = make_request(n_candidates=20, k=2)
    return [client.post("/v1/rank", json=body).json()["request_id"] for _ in range(count)]


def test_a_batch_whose_reply_was_lost_is_not_appended_twice(
    settings: Settings,
    proxy: ReplyDroppingProxy,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    configured = settings.model_copy(update={"redis_url": proxy.url, "log_retry_seconds": 0.05})
    with TestClient(create_app(configured)) as client:
        served = _serve(client, make_request, 5)
        wait_for_stream(redis_client, configured.decision_stream, 5)
        proxy.drop_reply_to(b"XADD")  # the next batch lands in Redis, its reply never arrives
        served += _serve(client, make_request, 5)
        stored = wait_for_stream(redis_client, configured.decision_stream, 10)
        while client.get("/readyz").json()["decision_log"]["deduplicated"] == 0 and proxy.dropped:
            time.sleep(0.02)  # the writer (or redis-py's retry) sends the applied batch again
        state = client.get("/readyz").json()["decision_log"]
        served += _serve(client, make_request, 3)  # and the log keeps working afterwards
        wait_for_stream(redis_client, configured.decision_stream, 13)

    assert proxy.dropped == 1
    assert state["deduplicated"] >= 1  # the resent records were recognised...
    assert len(stored) == 10  # ...and not appended again
    assert _served_ids(redis_client, configured.decision_stream) == served  # exactly once, in order
    assert state["dropped"] == 0


def test_the_stream_is_not_trimmed_by_default(settings: Settings) -> None:
    assert settings.log_trim == "off"


def test_maxlen_trimming_keeps_about_the_configured_length(
    settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    configured = settings.model_copy(update={"log_trim": "maxlen", "log_trim_threshold": 10})
    with TestClient(create_app(configured)) as client:
        served = _serve(client, make_request, 250)
        kept = _wait_for_last(redis_client, configured.decision_stream, served[-1])

    # `MAXLEN ~` trims whole stream nodes (100 entries each by default), never below the threshold.
    assert 10 <= len(kept) <= 10 + 100
    assert kept == served[-len(kept) :]  # the newest, in order


def test_minid_trimming_drops_entries_older_than_the_configured_age(
    settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    configured = settings.model_copy(update={"log_trim": "minid", "log_trim_threshold": 3.0})
    with TestClient(create_app(configured)) as client:
        old = _serve(client, make_request, 150)
        wait_for_stream(redis_client, configured.decision_stream, 150)
        time.sleep(3.5)  # the first 150 are now older than the 3 s the stream keeps
        new = _serve(client, make_request, 20)
        kept = _wait_for_last(redis_client, configured.decision_stream, new[-1])

    assert kept[-20:] == new
    assert len(kept) <= 150 + 20 - 100  # at least the first full node of old entries is gone
    assert kept == (old + new)[-len(kept) :]
