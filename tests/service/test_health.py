"""/healthz, /readyz and /metrics: what an orchestrator and a dashboard see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


def test_ready_with_a_loaded_bundle_reports_version_and_redis(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")

    assert ready.status_code == 200
    state = ready.json()
    assert state["ready"] is True
    assert state["version"]
    assert state["redis"] == "ok"
    assert state["decision_log"]["status"] == "ok"


def test_without_a_bundle_the_service_is_alive_but_not_ready(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"store": tmp_path / "empty-store"})
    with TestClient(create_app(empty)) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        rank = client.post(
            "/v1/rank",
            json={
                "user": {"id": "u", "features": []},
                "candidates": {"ids": ["a"], "features": [[0.0]], "predictions": [[0.0]]},
                "k": 1,
            },
        )

    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert "no active version" in ready.json()["detail"]
    assert rank.status_code == 503
    assert rank.headers["content-type"] == "application/problem+json"


def test_redis_unreachable_degrades_the_log_but_ranking_still_answers(
    settings: Settings, tmp_path: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    """The response never waits on Redis; the outage shows in /readyz, the records stay queued."""
    offline = settings.model_copy(
        update={
            "redis_url": f"unix://{tmp_path}/no-such.sock",
            "log_retry_seconds": 0.05,
            "log_flush_seconds": 0.2,
        }
    )
    with TestClient(create_app(offline)) as client:
        responses = [client.post("/v1/rank", json=make_request(n_candidates=40, k=4)) for _ in range(3)]
        state = client.get("/readyz").json()
        feedback = client.post("/v1/feedback", json={"request_id": "r", "rewards": {"like": 1.0}})

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert state["ready"] is True
    assert state["redis"].startswith("unreachable")
    assert state["decision_log"]["status"] == "degraded"
    assert state["decision_log"]["written"] == 0
    assert state["decision_log"]["pending"] == 3
    assert feedback.status_code == 503
    assert feedback.headers["content-type"] == "application/problem+json"


def test_metrics_count_requests_and_decision_log_writes(
    client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    client.post("/v1/rank", json=make_request(n_candidates=30, k=3))
    text = client.get("/metrics").text

    assert 'cascade_requests_total{endpoint="rank",status="200"} 1.0' in text
    assert "cascade_ort_seconds_count" in text
    assert "cascade_decision_log_queue_depth" in text
