"""Every kind of bad input gets a 4xx application/problem+json naming the field, never a 500."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        target: Any = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _drop_last_feature_value(body: dict[str, Any]) -> None:
    body["candidates"]["features"][3].pop()


def _duplicate_id(body: dict[str, Any]) -> None:
    body["candidates"]["ids"][4] = body["candidates"]["ids"][1]


def _one_prediction_row_short(body: dict[str, Any]) -> None:
    body["candidates"]["predictions"].pop()


CASES: list[tuple[str, Mutation, int, str]] = [
    ("wrong user width", _set(["user", "features"], [0.1, 0.2]), 422, "user.features"),
    ("user feature overflows float32", _set(["user", "features", 3], 1e39), 422, "user.features[3]"),
    ("wrong item width", _drop_last_feature_value, 422, "candidates.features[3]"),
    ("wrong context width", _set(["context"], [1.0]), 422, "context"),
    (
        "empty candidates",
        lambda b: b.update(candidates={"ids": [], "features": [], "predictions": []}),
        422,
        "candidates.ids",
    ),
    ("k zero", _set(["k"], 0), 422, "k"),
    ("k negative", _set(["k"], -3), 422, "k"),
    ("k above N", _set(["k"], 21), 422, "k"),
    ("k not an integer", _set(["k"], "ten"), 422, "k"),
    ("duplicate ids", _duplicate_id, 422, "candidates.ids[4]"),
    ("rows and ids disagree", _one_prediction_row_short, 422, "candidates.predictions"),
    ("unknown top-level field", _set(["explore"], True), 422, "explore"),
    ("unknown nested field", _set(["user", "age"], 31), 422, "user.age"),
    ("missing k", lambda b: b.pop("k"), 422, "k"),
    ("string in features", _set(["candidates", "features", 2, 5], "x"), 422, "candidates.features[2][5]"),
    (
        "overflow to infinity",
        _set(["candidates", "predictions", 6, 1], 1e300),
        422,
        "candidates.predictions[6][1]",
    ),
    ("unknown policy", _set(["policy"], "nope"), 404, "policy"),
]


@pytest.mark.parametrize(("mutate", "status", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_rank_body_gets_problem_naming_the_field(
    client: TestClient, make_request: Callable[..., dict[str, Any]], mutate: Mutation, status: int, field: str
) -> None:
    body = copy.deepcopy(make_request(n_candidates=20, k=5))
    mutate(body)

    response = client.post("/v1/rank", content=orjson.dumps(body), headers={"content-type": "application/json"})

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["field"] == field
    assert problem["status"] == status
    assert problem["type"].startswith("https://")
    assert problem["detail"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"user": {"id": "u1", "features": [NaN]}}', "body"),
        (b'{"user": ', "body"),
        (b"not json at all", "body"),
        (b'{"k": Infinity}', "body"),
    ],
    ids=["NaN literal", "truncated", "garbage", "Infinity literal"],
)
def test_malformed_json_gets_400_problem(client: TestClient, raw: bytes, field: str) -> None:
    response = client.post("/v1/rank", content=raw, headers={"content-type": "application/json"})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


@pytest.fixture
def small_limit_client(settings: Settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(limited), raise_server_exceptions=False) as test_client:
        yield test_client


def test_body_over_the_limit_gets_413(small_limit_client: TestClient) -> None:
    body = b'{"pad": "' + b"x" * 5000 + b'"}'

    response = small_limit_client.post("/v1/rank", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "body"


def test_body_over_the_limit_without_content_length_gets_413(small_limit_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 2048

    # A generator body is sent chunked: no Content-Length to trust, the bytes themselves count.
    response = small_limit_client.post("/v1/rank", content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_wrong_media_type_gets_415(client: TestClient) -> None:
    response = client.post("/v1/rank", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})

    assert response.status_code == 415
    assert response.json()["field"] == "content-type"


def test_the_worker_keeps_serving_after_bad_input(
    client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    for raw in (b"{", b'{"k": "x"}', b"[]"):
        assert client.post("/v1/rank", content=raw, headers={"content-type": "application/json"}).status_code < 500
    assert client.post("/v1/rank", json=make_request(n_candidates=30, k=3)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"request_id": "r1", "rewards": {}}, "rewards"),
        ({"request_id": "", "rewards": {"like": 1.0}}, "request_id"),
        ({"request_id": "r1", "rewards": {"like": "yes"}}, "rewards"),
        ({"request_id": "r1", "rewards": {"like": 1.0}, "extra": 1}, "extra"),
        ({"rewards": {"like": 1.0}}, "request_id"),
    ],
    ids=["no rewards", "empty request id", "non-numeric reward", "unknown field", "missing request id"],
)
def test_bad_feedback_gets_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/v1/feedback", json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field
