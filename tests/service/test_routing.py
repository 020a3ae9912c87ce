"""Routing in one worker: activate, roll back, canary, shadow, admin auth, retention."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.routing import in_canary
from contracts.store import active_version, versions
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import delete_decisions, stream_entries, wait_for_stream
from tests.versions import AUTH, add_version, corrupt


@pytest.fixture
def admin_client(admin_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(admin_settings)) as client:
        yield client


def _served_version(client: TestClient, body: dict[str, Any], want: str, timeout: float = 10.0) -> str:
    """Rank until the worker serves `want` (the swap is asynchronous) or the hang guard trips."""
    deadline = time.monotonic() + timeout
    version = ""
    while time.monotonic() < deadline:
        version = client.post("/v1/rank", json=body).json()["version"]
        if version == want:
            break
        time.sleep(0.02)
    return version


def test_canary_split_holds_within_two_points_and_users_stay_in_their_arm() -> None:
    users = [f"user-{i}" for i in range(10_000)]
    for fraction in (0.05, 0.2, 0.5):
        arms = [in_canary("demo", user, fraction) for user in users]
        again = [in_canary("demo", user, fraction) for user in users]

        assert abs(sum(arms) / len(users) - fraction) <= 0.02
        assert arms == again
    assert not any(in_canary("demo", user, 0.0) for user in users)
    assert all(in_canary("demo", user, 1.0) for user in users)


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer wrong"}, 403), (AUTH, 200)],
    ids=["no token", "wrong token", "right token"],
)
def test_admin_needs_the_bearer_token(admin_client: TestClient, headers: dict[str, str], status: int) -> None:
    response = admin_client.post("/v1/admin/policies/demo/activate", json={"version": "v2"}, headers=headers)

    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"


def test_admin_is_disabled_without_a_configured_token(client: TestClient) -> None:
    response = client.post("/v1/admin/policies/demo/rollback", headers=AUTH)

    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]


def test_activate_then_rollback_swaps_what_is_served(
    admin_client: TestClient, admin_settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    body = make_request(n_candidates=100, k=5)
    first = admin_client.post("/v1/rank", json=body).json()["version"]

    activated = admin_client.post("/v1/admin/policies/demo/activate", json={"version": "v2"}, headers=AUTH)
    assert activated.status_code == 200
    assert activated.json()["active"] == "v2"
    assert activated.json()["previous"] == first
    assert _served_version(admin_client, body, "v2") == "v2"

    rolled = admin_client.post("/v1/admin/policies/demo/rollback", headers=AUTH)
    assert rolled.json()["active"] == first
    assert _served_version(admin_client, body, first) == first
    models = admin_client.get("/v1/models").json()["policies"][0]
    assert models["worker_serving"]["active"] == first


def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
    admin_client: TestClient, admin_settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    before = admin_client.post("/v1/rank", json=make_request(n_candidates=50, k=3)).json()["version"]
    corrupt(add_version(admin_settings.store, "v-bad"))

    response = admin_client.post("/v1/admin/policies/demo/activate", json={"version": "v-bad"}, headers=AUTH)
    unknown = admin_client.post("/v1/admin/policies/demo/activate", json={"version": "v-none"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["field"] == "version"
    assert "sha256" in response.json()["detail"]
    assert unknown.status_code == 404
    assert admin_client.get("/v1/models").json()["policies"][0]["active"] == before
    assert admin_client.post("/v1/rank", json=make_request(n_candidates=50, k=3)).json()["version"] == before
    assert "cascade_swap_failures_total" in admin_client.get("/metrics").text


def test_a_full_canary_serves_its_version_and_logs_the_arm(
    admin_client: TestClient,
    admin_settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    body = make_request(n_candidates=60, k=4)
    response = admin_client.post(
        "/v1/admin/policies/demo/canary", json={"version": "v3", "fraction": 1.0}, headers=AUTH
    )
    assert response.status_code == 200
    assert _served_version(admin_client, body, "v3") == "v3"

    served = admin_client.post("/v1/rank", json=body).json()

    assert served["arm"] == "canary"
    # The polling requests above are logged too, and asynchronously: find this request's own record.
    deadline = time.monotonic() + 10
    while True:
        entries = stream_entries(redis_client, admin_settings.decision_stream)
        records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
        mine = [record for record in records if record.request_id == served["request_id"]]
        if mine:
            break
        assert time.monotonic() < deadline, "the served request's record never reached the stream"
        time.sleep(0.02)
    assert [(record.arm, record.version) for record in mine] == [("canary", "v3")]


def test_a_shadow_version_is_logged_beside_the_served_one_never_returned(
    admin_client: TestClient,
    admin_settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    assert admin_client.post("/v1/admin/policies/demo/shadow", json={"version": "v2"}, headers=AUTH).status_code == 200
    deadline = time.monotonic() + 10
    while admin_client.get("/v1/models").json()["policies"][0]["worker_serving"]["shadow"] != "v2":
        assert time.monotonic() < deadline, "the worker never loaded the shadow version"
        time.sleep(0.02)
    delete_decisions(redis_client, admin_settings.decision_stream)

    served = admin_client.post("/v1/rank", json=make_request(n_candidates=80, k=5)).json()

    records = [
        decision_record.decode(fields[decision_record.STREAM_FIELD])
        for _, fields in wait_for_stream(redis_client, admin_settings.decision_stream, 2)
    ]
    by_arm = {r.arm: r for r in records}
    assert set(by_arm) == {"control", "shadow"}
    assert served["version"] != "v2"
    assert by_arm["control"].request_id == served["request_id"]
    assert by_arm["shadow"].version == "v2"
    assert by_arm["shadow"].shadow_of == served["request_id"]
    assert by_arm["shadow"].request_id != served["request_id"]


def test_retention_keeps_the_newest_retired_versions_and_never_the_ones_in_use(
    admin_client: TestClient, admin_settings: Settings
) -> None:
    store = admin_settings.store
    original = active_version(store, "demo")
    for i in range(8):
        add_version(store, f"v1{i}")
    admin_client.post("/v1/admin/policies/demo/shadow", json={"version": "v2"}, headers=AUTH)

    for i in range(8):
        response = admin_client.post("/v1/admin/policies/demo/activate", json={"version": f"v1{i}"}, headers=AUTH)
        assert response.status_code == 200, response.text

    on_disk = versions(store, "demo")
    assert {"v17", "v16", "v2"} <= set(on_disk)  # active, previous (rollback target), shadow
    assert {"v11", "v12", "v13", "v14", "v15"} <= set(on_disk)  # the newest retired ones
    assert original not in on_disk and "v10" not in on_disk  # the oldest retired ones went
    assert "v3" in on_disk  # never routed: staged, never deleted
