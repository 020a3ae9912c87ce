"""Two replicas behave as one: two `cascade serve` processes on two ports, one shared Redis.

Nothing in the service keeps state another replica needs (DESIGN.md, conventions): routing lives in
Redis, so a version activated and a canary set through replica A are served by replica B too, and
the canary's split by a stable hash of the user id is the same on both; both append to one decision
stream; feedback posted to either one joins a decision the other served.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from contracts import decision_record
from pipelines.server import activate, cascade_serve, wait_for_version
from tests.redis_streams import wait_for_stream
from tests.server_env import isolated_env
from tests.versions import add_version, private_store

TOKEN = "replicas-test-token"
USERS = [f"u{i}" for i in range(40)]


@dataclass(frozen=True)
class Replicas:
    a: str
    b: str
    store: Path
    decisions: str
    feedback: str


@pytest.fixture
def replicas(store: Path, redis_url: str, tmp_path: Path) -> Iterator[Replicas]:
    own = private_store(store, tmp_path / "store")
    namespace = f"test:{uuid.uuid4().hex[:8]}"
    # The session's standalone redis-server: neither replica starts an embedded one.
    env = isolated_env(redis_url, namespace, tmp_path / "spool", CASCADE_ADMIN_TOKEN=TOKEN)
    with ExitStack() as stack:
        a = stack.enter_context(cascade_serve(own, env, tmp_path / "a.log", workers=1, ready_s=120))
        b = stack.enter_context(cascade_serve(own, env, tmp_path / "b.log", workers=1, ready_s=120))
        yield Replicas(a, b, own, env["CASCADE_DECISION_STREAM"], env["CASCADE_FEEDBACK_STREAM"])


def admin(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)


def canary_of(base: str) -> tuple[str | None, float]:
    (status,) = [s for s in httpx.get(f"{base}/v1/models", timeout=5).json()["policies"] if s["policy"] == "demo"]
    serving = status["worker_serving"] or {}
    return serving.get("canary"), float(serving.get("canary_fraction") or 0.0)


def wait_for_canary(base: str, version: str, timeout_s: float = 60.0) -> None:
    """Poll until the answering worker serves this canary (routing changes arrive by pub/sub)."""
    deadline = time.monotonic() + timeout_s
    while canary_of(base)[0] != version:
        if time.monotonic() > deadline:
            raise AssertionError(f"{base} did not serve canary {version} within {timeout_s:.0f} s")
        time.sleep(0.2)


@pytest.mark.e2e
def test_two_replicas_serve_one_routing_split_users_alike_log_to_one_stream_and_join_feedback_across(
    replicas: Replicas, make_request: Callable[..., dict[str, Any]], redis_url: str
) -> None:
    add_version(replicas.store, "v-stable")
    add_version(replicas.store, "v-canary")
    # Published into the shared store; activated and canaried through replica A only.
    activate(replicas.a, "demo", "v-stable", TOKEN)
    canary = admin(replicas.a, "/v1/admin/policies/demo/canary", {"version": "v-canary", "fraction": 0.5})
    assert canary.status_code == 200, canary.text
    for base in (replicas.a, replicas.b):
        wait_for_version(base, "demo", "v-stable")
        wait_for_canary(base, "v-canary")

    served: dict[str, list[dict[str, Any]]] = {replicas.a: [], replicas.b: []}
    for user in USERS:
        body = make_request(n_candidates=50, k=5)
        body["user"]["id"] = user
        for base in (replicas.a, replicas.b):
            answer = httpx.post(f"{base}/v1/rank", json=body, timeout=10)
            assert answer.status_code == 200, answer.text
            served[base].append(answer.json())

    arms_a = [(r["version"], r["arm"]) for r in served[replicas.a]]
    arms_b = [(r["version"], r["arm"]) for r in served[replicas.b]]
    # The same user gets the same arm and version from either replica, and both arms are in use.
    assert arms_a == arms_b
    assert {version for version, _ in arms_a} == {"v-stable", "v-canary"}

    client = redis.Redis.from_url(redis_url)
    try:
        total = 2 * len(USERS)
        entries = wait_for_stream(client, replicas.decisions, total, timeout=30)
        records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
        logged = {record.request_id for record in records}
        # One stream holds the decisions of both replicas.
        assert len(records) == total
        assert {r["request_id"] for r in served[replicas.a]} <= logged
        assert {r["request_id"] for r in served[replicas.b]} <= logged

        # Feedback for A's decisions goes to B and for B's to A: each joins (202 accepted, not 404).
        for answered_by, sent_to in ((replicas.a, replicas.b), (replicas.b, replicas.a)):
            for response in served[answered_by][:5]:
                feedback = {
                    "request_id": response["request_id"],
                    "item_id": response["items"][0]["id"],
                    "rewards": {"click": 1.0},
                }
                posted = httpx.post(f"{sent_to}/v1/feedback", json=feedback, timeout=10)
                assert posted.status_code == 202, posted.text
                assert posted.json()["status"] == "accepted"
        assert client.xlen(replicas.feedback) == 10
    finally:
        client.close()
