"""Routing that survives Redis losing its data, follows new policies, loads a bundle once, retains safely.

Two workers are two app instances on one Redis and one store, as two uvicorn workers are. Redis losing
its data is the routing keys deleted under a live worker (what a restart without persistence leaves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts.manifest import MANIFEST_FILE
from contracts.store import active_version, bundle_path, versions
from service.app import create_app
from service.settings import Settings
from tests.versions import AUTH, add_version, corrupt, resign


@pytest.fixture
def worker(admin_settings: Settings) -> Iterator[Callable[[], TestClient]]:
    """Start app instances on the same Redis and store; all are stopped after the test."""
    started: list[TestClient] = []

    def start() -> TestClient:
        client = TestClient(create_app(admin_settings))
        client.__enter__()
        started.append(client)
        return client

    yield start
    for client in reversed(started):
        client.__exit__(None, None, None)


def _serves(client: TestClient, policy: str = "demo") -> str | None:
    for status in client.get("/v1/models").json()["policies"]:
        if status["policy"] == policy and status["worker_serving"]:
            return str(status["worker_serving"]["active"])
    return None


def _wait_serving(client: TestClient, want: str, policy: str = "demo", timeout: float = 10.0) -> str | None:
    """Poll until the worker serves `want` (swaps are asynchronous) or the hang guard trips."""
    deadline = time.monotonic() + timeout
    served = _serves(client, policy)
    while served != want and time.monotonic() < deadline:
        time.sleep(0.02)
        served = _serves(client, policy)
    return served


def _lose_routing(redis_client: redis.Redis, namespace: str) -> None:
    for key in redis_client.scan_iter(f"{namespace}:routing*"):
        redis_client.delete(key)


def test_routing_survives_redis_losing_its_data(
    worker: Callable[[], TestClient],
    admin_settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    first = worker()
    assert first.post("/v1/admin/policies/demo/activate", json={"version": "v2"}, headers=AUTH).status_code == 200
    assert _wait_serving(first, "v2") == "v2"

    _lose_routing(redis_client, admin_settings.routing_namespace)
    second = worker()  # a worker (re)started after the loss rebuilds routing from the store

    assert _serves(second) == "v2"
    body = make_request(n_candidates=40, k=3)
    answers = [client.post("/v1/rank", json=body).json()["version"] for client in (first, second) for _ in range(20)]
    assert answers.count("v2") == len(answers)

    before = first.get("/v1/models").json()["policies"][0]["revision"]
    activated = second.post("/v1/admin/policies/demo/activate", json={"version": "v3"}, headers=AUTH)
    assert activated.status_code == 200
    assert activated.json()["revision"] > before  # the revision never goes backwards
    assert (_wait_serving(first, "v3"), _wait_serving(second, "v3")) == ("v3", "v3")
    assert active_version(admin_settings.store, "demo") == "v3"  # the store's pointer agrees


def test_a_worker_follows_any_difference_not_only_a_larger_revision(
    worker: Callable[[], TestClient], admin_settings: Settings, redis_client: redis.Redis
) -> None:
    client = worker()
    assert client.post("/v1/admin/policies/demo/activate", json={"version": "v2"}, headers=AUTH).status_code == 200
    assert _wait_serving(client, "v2") == "v2"
    revision = client.get("/v1/models").json()["policies"][0]["revision"]

    # Redis now names another version at the very revision this worker serves.
    key = f"{admin_settings.routing_namespace}:routing:demo"
    redis_client.hset(key, mapping={"active": "v3", "revision": str(revision)})

    assert _wait_serving(client, "v3") == "v3"


def test_activate_can_wait_until_every_live_worker_serves_it(worker: Callable[[], TestClient]) -> None:
    first, second = worker(), worker()

    answer = first.post(
        "/v1/admin/policies/demo/activate", json={"version": "v3", "wait_seconds": 20}, headers=AUTH
    ).json()

    assert answer["converged"] is True
    assert len(answer["workers"]) >= 2
    assert {w["active"] for w in answer["workers"].values()} == {"v3"}
    assert _serves(first) == "v3"
    assert _serves(second) == "v3"


def _new_policy(store: Path, policy: str, version: str) -> None:
    """A policy that did not exist when the workers started: the demo bundle under another name."""
    source = bundle_path(store, "demo", active_version(store, "demo"))
    target = bundle_path(store, policy, version)
    target.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest.update(policy=policy, version=version)
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    resign(store, target)


def test_a_policy_published_after_start_up_is_served_once_activated(
    worker: Callable[[], TestClient], admin_settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    client = worker()
    _new_policy(admin_settings.store, "fresh", "f1")

    activated = client.post("/v1/admin/policies/fresh/activate", json={"version": "f1"}, headers=AUTH)
    assert activated.status_code == 200, activated.text

    assert _wait_serving(client, "f1", policy="fresh") == "f1"
    served = client.post("/v1/rank", json={**make_request(n_candidates=30, k=3), "policy": "fresh"})
    assert served.status_code == 200, served.text
    assert (served.json()["policy"], served.json()["version"]) == ("fresh", "f1")


def _loads(client: TestClient, policy: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'cascade_bundle_loads_total{{policy="{policy}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_bundle_admin_verified_is_the_one_served_loaded_once(worker: Callable[[], TestClient]) -> None:
    client = worker()
    assert _wait_serving(client, _serves(client) or "") is not None
    before = _loads(client, "demo")

    assert client.post("/v1/admin/policies/demo/activate", json={"version": "v2"}, headers=AUTH).status_code == 200
    assert _wait_serving(client, "v2") == "v2"

    assert _loads(client, "demo") - before == 1.0


def test_retention_never_deletes_staged_versions_and_does_not_count_refused_ones(
    worker: Callable[[], TestClient], admin_settings: Settings
) -> None:
    store = admin_settings.store
    client = worker()
    staged = [f"s{i:02d}" for i in range(10)]
    for version in staged:
        add_version(store, version)
    for version in ("c1", "c2"):
        corrupt(add_version(store, version))

    for version in ("v2", "v3", staged[0]):
        response = client.post("/v1/admin/policies/demo/activate", json={"version": version}, headers=AUTH)
        assert response.status_code == 200, response.text
    refused = client.post("/v1/admin/policies/demo/activate", json={"version": "c1"}, headers=AUTH)
    assert refused.status_code == 422

    on_disk = set(versions(store, "demo"))
    assert set(staged) <= on_disk  # staged for later activations: all still there
    assert {"c1", "c2"} <= on_disk  # refused: never served, never counted, left for the operator
    for version in staged[1:]:  # each staged one can still be activated
        response = client.post("/v1/admin/policies/demo/activate", json={"version": version}, headers=AUTH)
        assert response.status_code == 200, response.text
    retired = set(versions(store, "demo")) - {staged[-1], staged[-2]}
    assert len(retired - {"c1", "c2"}) <= admin_settings.retain_versions
