"""The hot path (service/hot_path.py): POST /v1/rank and /v1/fusion answered ahead of FastAPI's router.

What it must keep: the refusals FastAPI's routes send (same handlers, same bytes), the not-ready 503
before start-up, everything else passed on to FastAPI (whose documented routes answer the same way when
a POST reaches them), JSON and msgpack over a real granian server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from fastapi.testclient import TestClient

from contracts.item_table import active_items_version, load_item_table
from contracts.store import active_version, read_manifest
from pipelines.server import cascade_serve
from service.app import create_app
from service.settings import Settings
from tests.server_env import isolated_env


def _by_id(store: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """A rank body of `n` candidates named by id from the store's item table."""
    table = load_item_table(store, active_items_version(store) or "")
    rng = np.random.default_rng(seed)
    ids = [table.ids[int(i)] for i in rng.choice(len(table.ids), size=n, replace=False)]
    return {
        "user": {"id": f"user-{seed}", "features": rng.standard_normal(_user_dim(store)).tolist()},
        "candidates": {"ids": ids},
        "k": 10,
    }


def _user_dim(store: Path) -> int:
    return read_manifest(store / "demo" / (active_version(store, "demo") or "")).feature_schema.user_dim


def test_a_refusal_on_the_hot_path_is_the_one_a_fastapi_route_sends(client: TestClient) -> None:
    hot = client.post("/v1/rank", content=b"<xml/>", headers={"content-type": "application/xml"})
    routed = client.post("/v1/feedback", content=b"<xml/>", headers={"content-type": "application/xml"})

    assert hot.status_code == routed.status_code == 415
    assert hot.headers["content-type"] == routed.headers["content-type"] == "application/problem+json"
    assert hot.content == routed.content.replace(b'"/v1/feedback"', b'"/v1/rank"')
    assert hot.json()["field"] == "content-type"
    metrics = client.get("/metrics").text
    assert 'cascade_requests_total{endpoint="rank",status="415"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/v1/rank", "/v1/fusion"])
def test_an_invalid_field_on_the_hot_path_is_422_naming_it(
    client: TestClient, make_request: Callable[..., dict[str, Any]], path: str
) -> None:
    body = make_request(n_candidates=20, k=5)
    body["user"]["features"] = body["user"]["features"][:-1]
    if path == "/v1/fusion":
        body = {"user": body["user"]}

    response = client.post(path, json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "user.features"
    assert response.json()["instance"] == path


def test_before_start_up_the_hot_path_answers_503_not_ready(settings: Settings) -> None:
    app = create_app(settings)  # no lifespan run: nothing is loaded yet

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/v1/rank", json={"user": {"id": "u", "features": []}})

    response = asyncio.run(post())

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/not-ready")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_on_the_hot_paths_are_fastapis_405(client: TestClient, method: str) -> None:
    for path in ("/v1/rank", "/v1/fusion"):
        response = client.request(method, path)

        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "POST"
        assert response.json()["type"].endswith("/method-not-allowed")


@pytest.mark.e2e
def test_granian_serves_the_hot_path_in_json_and_msgpack(store: Path, redis_url: str, tmp_path: Path) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    env = isolated_env(redis_url, prefix, tmp_path / "spool")
    small, large = _by_id(store, 50, seed=1), _by_id(store, 500, seed=2)
    with cascade_serve(store, env, log=tmp_path / "server.log", workers=1) as base, httpx.Client(base_url=base) as http:
        as_json = http.post("/v1/rank", json=small, timeout=30)
        as_msgpack = http.post(
            "/v1/rank",
            content=msgspec.msgpack.encode(large),
            headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
            timeout=30,
        )
        fusion = http.post("/v1/fusion", json={"user": small["user"]}, timeout=30)
        metrics = http.get("/metrics", timeout=30).text

    assert as_json.status_code == as_msgpack.status_code == fusion.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_msgpack.headers["content-type"] == "application/msgpack"
    assert as_json.headers["x-cascade-worker"] == as_msgpack.headers["x-cascade-worker"] != ""
    assert len(as_json.json()["items"]) == len(msgspec.msgpack.decode(as_msgpack.content)["items"]) == 10
    assert set(fusion.json()["weights"]) == set(as_json.json()["fusion_weights"])
    assert 'cascade_requests_total{endpoint="rank",status="200"} 2.0' in metrics
    assert 'cascade_requests_total{endpoint="fusion",status="200"} 1.0' in metrics


def test_under_a_root_path_fastapis_documented_route_answers_the_same(
    settings: Settings, store: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    # Starlette's router strips the root path; the hot path's exact match does not, so FastAPI's route answers.
    with TestClient(create_app(settings), root_path="/api", raise_server_exceptions=False) as client:
        answered = client.post("/api/v1/rank", json=_by_id(store, 40))
        refused = client.post("/api/v1/rank", content=b"{", headers={"content-type": "application/json"})

    assert answered.status_code == 200, answered.text
    assert answered.headers["x-cascade-worker"]
    assert len(answered.json()["items"]) == 10
    assert refused.status_code == 400
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["field"] == "body"
