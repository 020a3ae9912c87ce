"""Posting feedback for a decision the service has just served, which it logs asynchronously by design."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient


def post_feedback(client: TestClient, request_id: str, rewards: dict[str, float], timeout: float = 10.0) -> None:
    """POST /v1/feedback until the decision is in Redis (404 before), then expect 202."""
    deadline = time.monotonic() + timeout  # hang guard, not a timing assertion
    body = {"request_id": request_id, "rewards": rewards}
    while (answer := client.post("/v1/feedback", json=body)).status_code == 404:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.02)
    assert answer.status_code == 202, answer.text
