"""POST /v1/feedback stores rewards for logged decisions, once per event, and says what it did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts import feedback_record
from contracts.feedback_record import FeedbackRecord
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import stream_length, wait_for_stream


def _records(redis_client: redis.Redis, stream: str) -> list[FeedbackRecord]:
    return [feedback_record.decode(fields[feedback_record.STREAM_FIELD]) for _, fields in redis_client.xrange(stream)]


@pytest.fixture
def serve_logged(
    settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> Callable[[TestClient], dict[str, Any]]:
    """Serve one request and wait until its decision record is in Redis (the log is asynchronous)."""

    def serve(client: TestClient) -> dict[str, Any]:
        served: dict[str, Any] = client.post("/v1/rank", json=make_request(n_candidates=50, k=3)).json()
        wait_for_stream(
            redis_client, settings.decision_stream, stream_length(redis_client, settings.decision_stream) + 1
        )
        return served

    return serve


def test_feedback_for_a_served_request_is_stored(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    serve_logged: Callable[[TestClient], dict[str, Any]],
) -> None:
    served = serve_logged(client)
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
    assert response.json() == {"request_id": served["request_id"], "duplicate": False, "status": "accepted"}
    (record,) = _records(redis_client, settings.feedback_stream)
    assert record.request_id == served["request_id"]
    assert record.item_id == item
    assert record.rewards == {"watch_time": 1.5, "like": 1.0}
    assert record.time > 0
    assert record.late is False


def test_a_retried_feedback_event_is_stored_once_and_answered_200_duplicate(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    serve_logged: Callable[[TestClient], dict[str, Any]],
) -> None:
    event = {"request_id": serve_logged(client)["request_id"], "rewards": {"like": 1.0}, "event_id": "e-1"}
    first = client.post("/v1/feedback", json=event)
    second = client.post("/v1/feedback", json=event)
    different = client.post("/v1/feedback", json={**event, "event_id": "e-2"})

    assert [first.status_code, second.status_code, different.status_code] == [202, 200, 202]
    assert [first.json()["status"], second.json()["status"], different.json()["status"]] == [
        "accepted",
        "duplicate",
        "accepted",
    ]
    assert [first.json()["duplicate"], second.json()["duplicate"], different.json()["duplicate"]] == [
        False,
        True,
        False,
    ]
    assert len(_records(redis_client, settings.feedback_stream)) == 2


def test_identical_bodies_without_event_id_count_as_one_event(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    serve_logged: Callable[[TestClient], dict[str, Any]],
) -> None:
    body = {"request_id": serve_logged(client)["request_id"], "item_id": "i1", "rewards": {"watch_time": 2.0}}
    client.post("/v1/feedback", json=body)
    client.post("/v1/feedback", json=body)
    client.post("/v1/feedback", json={**body, "rewards": {"watch_time": 3.0}})

    assert len(_records(redis_client, settings.feedback_stream)) == 2


def test_feedback_sent_the_moment_a_response_arrives_is_accepted(
    client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    """The decision record is written asynchronously; the worker that served it waits for it."""
    statuses = []
    for _ in range(5):
        served = client.post("/v1/rank", json=make_request(n_candidates=30, k=2)).json()
        response = client.post("/v1/feedback", json={"request_id": served["request_id"], "rewards": {"like": 1.0}})
        statuses.append((response.status_code, response.json()["status"]))

    assert statuses == [(202, "accepted")] * 5


def test_feedback_for_an_unknown_request_is_404_problem_and_not_stored(
    client: TestClient, settings: Settings, redis_client: redis.Redis
) -> None:
    response = client.post("/v1/feedback", json={"request_id": "never-served", "rewards": {"like": 1.0}})

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["type"].endswith("/unknown-request")
    assert problem["field"] == "request_id"
    assert "never-served" in problem["detail"]
    assert _records(redis_client, settings.feedback_stream) == []


def test_feedback_after_the_reward_window_is_stored_marked_late(
    settings: Settings,
    redis_client: redis.Redis,
    serve_logged: Callable[[TestClient], dict[str, Any]],
) -> None:
    configured = settings.model_copy(update={"reward_window_seconds": 1e-6})  # every answer comes later
    with TestClient(create_app(configured)) as client:
        served = serve_logged(client)
        response = client.post("/v1/feedback", json={"request_id": served["request_id"], "rewards": {"like": 1.0}})

    assert response.status_code == 202
    assert response.json()["status"] == "late"
    (record,) = _records(redis_client, settings.feedback_stream)
    assert record.late is True
    assert record.rewards == {"like": 1.0}


def test_feedback_outcomes_are_counted_in_metrics(
    client: TestClient, serve_logged: Callable[[TestClient], dict[str, Any]]
) -> None:
    event = {"request_id": serve_logged(client)["request_id"], "rewards": {"like": 1.0}}
    client.post("/v1/feedback", json=event)
    client.post("/v1/feedback", json=event)
    client.post("/v1/feedback", json={**event, "request_id": "nope"})

    text = client.get("/metrics").text
    for outcome in ("accepted", "duplicate", "unknown_request"):
        assert f'cascade_feedback_total{{outcome="{outcome}"}} 1.0' in text
