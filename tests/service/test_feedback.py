"""POST /v1/feedback stores rewards by request id in the feedback stream, once per event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import redis
from fastapi.testclient import TestClient

from service.feedback import FeedbackRecord
from service.settings import Settings


def _records(redis_client: redis.Redis, stream: str) -> list[FeedbackRecord]:
    return [msgspec.json.decode(fields[b"f"], type=FeedbackRecord) for _, fields in redis_client.xrange(stream)]


def test_feedback_for_a_served_request_is_stored(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    served = client.post("/v1/rank", json=make_request(n_candidates=50, k=3)).json()
    item = served["items"][0]["id"]

    response = client.post(
        "/v1/feedback",
        json={
            "request_id": served["request_id"],
            "item_id": item,
            "rewards": {"watch_time": 1.5, "like": 1.0},
        },
    )

    assert response.status_code == 202
    assert response.json() == {"request_id": served["request_id"], "duplicate": False}
    (record,) = _records(redis_client, settings.feedback_stream)
    assert record.request_id == served["request_id"]
    assert record.item_id == item
    assert record.rewards == {"watch_time": 1.5, "like": 1.0}
    assert record.time > 0


def test_a_retried_feedback_event_is_stored_once(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    event = {"request_id": "r-retry", "rewards": {"like": 1.0}, "event_id": "e-1"}
    first = client.post("/v1/feedback", json=event)
    second = client.post("/v1/feedback", json=event)
    different = client.post("/v1/feedback", json={**event, "event_id": "e-2"})

    assert [first.status_code, second.status_code, different.status_code] == [202, 202, 202]
    assert [first.json()["duplicate"], second.json()["duplicate"], different.json()["duplicate"]] == [
        False,
        True,
        False,
    ]
    assert len(_records(redis_client, settings.feedback_stream)) == 2


def test_identical_bodies_without_event_id_count_as_one_event(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    body = {"request_id": "r-same", "item_id": "i1", "rewards": {"watch_time": 2.0}}
    client.post("/v1/feedback", json=body)
    client.post("/v1/feedback", json=body)
    client.post("/v1/feedback", json={**body, "rewards": {"watch_time": 3.0}})

    assert len(_records(redis_client, settings.feedback_stream)) == 2
