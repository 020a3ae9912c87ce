"""Faults injected into the real app in this process: Redis gone, a client that hangs up, hostile sizes.

Each test counts what the fault produced (statuses, log records, a metric) against what the service
promises in RELIABILITY.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient

from contracts.item_table import active_items_version
from contracts.store import active_version
from pipelines.server import free_port
from service.app import create_app
from service.settings import Settings

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def no_redis_client(settings: Settings) -> Iterator[TestClient]:
    """The app started with Redis unreachable (nothing listens on its port): it serves from the store."""
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "admin_token": TOKEN})
    with TestClient(create_app(dead), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/demo", None),
        ("POST", "/v1/admin/policies/demo/activate", {"version": "ACTIVE"}),
        ("POST", "/v1/admin/policies/demo/rollback", None),
        ("POST", "/v1/admin/policies/demo/canary", {"version": None}),
        ("POST", "/v1/admin/policies/demo/shadow", {"version": None}),
        ("POST", "/v1/admin/items/activate", {"version": "ACTIVE"}),
    ],
)
def test_every_route_that_needs_redis_answers_503_problem_while_it_is_down(
    no_redis_client: TestClient, settings: Settings, method: str, path: str, body: dict[str, Any] | None
) -> None:
    if body is not None and body.get("version") == "ACTIVE":  # a version that verifies: Redis is the only fault
        items = "items" in path
        body = {"version": active_items_version(settings.store) if items else active_version(settings.store, "demo")}
    response = no_redis_client.request(method, path, json=body, headers=AUTH)

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert response.json()["type"].endswith("/redis-unavailable")


def _send_raw(client: TestClient, path: str, chunks: list[bytes], declared: int) -> list[dict[str, Any]]:
    """Drive the app's ASGI callable with a body that stops after `chunks`: the client hung up."""
    app = client.app
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(declared).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def run() -> None:
        await app(scope, receive, send)  # type: ignore[arg-type]

    assert client.portal is not None
    client.portal.call(run)
    return sent


@pytest.mark.parametrize("path", ["/v1/rank", "/v1/fusion", "/v1/feedback"])
def test_a_client_that_disconnects_mid_upload_is_counted_not_an_error(
    client: TestClient, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    aborts = 20
    with caplog.at_level(logging.WARNING):
        answers = [_send_raw(client, path, [b'{"user": {"id": "u", '], declared=4096) for _ in range(aborts)]

    statuses = [m["status"] for sent in answers for m in sent if m["type"] == "http.response.start"]
    assert 500 not in statuses
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    metrics = client.get("/metrics").text
    endpoint = path.rsplit("/", 1)[-1]
    assert f'cascade_client_disconnects_total{{endpoint="{endpoint}"}} {float(aborts)}' in metrics


@pytest.fixture
def limited_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(
        update={"max_candidates": 100, "max_k": 20, "max_reward_keys": 4, "max_name_length": 16}
    )
    with TestClient(create_app(limited), raise_server_exceptions=False) as client:
        yield client


def _problem_field(response: Any) -> str:
    assert response.status_code in (413, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["field"])


def test_more_candidates_than_allowed_are_refused_naming_the_field(
    limited_client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    too_many = make_request(n_candidates=101, k=5)
    at_limit = make_request(n_candidates=100, k=20)
    k_too_large = make_request(n_candidates=100, k=21)

    assert _problem_field(limited_client.post("/v1/rank", json=too_many)) == "candidates.ids"
    assert limited_client.post("/v1/rank", json=at_limit).status_code == 200
    assert _problem_field(limited_client.post("/v1/rank", json=k_too_large)) == "k"
    fusion = {"user": too_many["user"], "candidates": too_many["candidates"]}
    assert _problem_field(limited_client.post("/v1/fusion", json=fusion)) == "candidates.ids"


@pytest.mark.parametrize(
    ("rewards", "field"),
    [
        ({f"r{i}": 1.0 for i in range(5)}, "rewards"),
        ({"a" * 17: 1.0}, "rewards"),
    ],
    ids=["too many keys", "name too long"],
)
def test_reward_maps_beyond_the_limits_are_refused_naming_the_field(
    limited_client: TestClient, rewards: dict[str, float], field: str
) -> None:
    response = limited_client.post("/v1/feedback", json={"request_id": "r-1", "rewards": rewards})

    assert _problem_field(response).startswith(field)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"request_id": "r-1", "rewards": {"like": 1e999}}'),
        ("application/msgpack", msgspec.msgpack.encode({"request_id": "r-1", "rewards": {"like": float("nan")}})),
        ("application/msgpack", msgspec.msgpack.encode({"request_id": "r-1", "rewards": {"like": float("-inf")}})),
    ],
    ids=["json overflow to inf", "msgpack nan", "msgpack -inf"],
)
def test_a_non_finite_reward_is_refused_in_every_codec(client: TestClient, content_type: str, body: bytes) -> None:
    response = client.post("/v1/feedback", content=body, headers={"content-type": content_type})

    assert response.status_code == 422, response.text
    assert response.json()["field"].startswith("rewards")


def test_405_names_the_allowed_methods(client: TestClient) -> None:
    response = client.put("/v1/rank")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/problem+json"


def test_the_contract_lists_what_the_server_answers(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    rollback = document["paths"]["/v1/admin/policies/{policy}/rollback"]["post"]["responses"]
    rank = document["paths"]["/v1/rank"]["post"]["responses"]
    schemas = document["components"]["schemas"]

    assert "409" in rollback
    assert {"408", "503"} <= set(rank)
    assert schemas["Candidates"]["properties"]["ids"]["minItems"] == 1
    assert schemas["RankRequest"]["properties"]["k"]["minimum"] == 1
    assert "/v1/models/{policy}" in document["paths"]


def test_rollback_with_nothing_to_roll_back_to_is_409_naming_the_field(settings: Settings) -> None:
    admin = settings.model_copy(update={"admin_token": TOKEN})
    with TestClient(create_app(admin)) as client:
        response = client.post("/v1/admin/policies/demo/rollback", headers=AUTH)

    assert response.status_code == 409
    assert response.json()["field"] == "previous"
