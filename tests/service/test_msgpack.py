"""application/msgpack bodies: the same schema as JSON, plus raw float32 tensors for the matrices."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.service.first_response import decision_of, first_answer

MSGPACK = "application/msgpack"


def tensor(rows: list[list[float]]) -> dict[str, Any]:
    array = np.asarray(rows, dtype="<f4")
    return {"shape": list(array.shape), "data": array.tobytes()}


def with_tensors(body: dict[str, Any]) -> dict[str, Any]:
    candidates = body["candidates"]
    binary = {name: tensor(candidates[name]) for name in ("features", "predictions")}
    return {**body, "candidates": {**candidates, **binary}}


def test_msgpack_json_and_raw_tensors_decide_alike(
    settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    body = make_request(n_candidates=400)
    as_json = first_answer(settings, "/v1/rank", json.dumps(body).encode(), "application/json")
    as_msgpack = first_answer(settings, "/v1/rank", msgspec.msgpack.encode(body), MSGPACK)
    as_tensors = first_answer(settings, "/v1/rank", msgspec.msgpack.encode(with_tensors(body)), MSGPACK)
    assert as_json.status_code == as_msgpack.status_code == as_tensors.status_code == 200, as_tensors.text
    assert decision_of(as_json.json()) == decision_of(as_msgpack.json()) == decision_of(as_tensors.json())


def test_a_tensor_travels_in_json_as_base64(client: TestClient, make_request: Callable[..., dict[str, Any]]) -> None:
    body = with_tensors(make_request(n_candidates=50))
    answer = client.post("/v1/rank", content=msgspec.json.encode(body), headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text


def test_msgpack_answer_on_accept(client: TestClient, make_request: Callable[..., dict[str, Any]]) -> None:
    answer = client.post(
        "/v1/rank",
        content=msgspec.msgpack.encode(make_request(n_candidates=30)),
        headers={"content-type": MSGPACK, "accept": MSGPACK},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == MSGPACK
    assert len(msgspec.msgpack.decode(answer.content)["items"]) == 10


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda t: {**t, "shape": [t["shape"][0], t["shape"][1] + 1]}, "candidates.features.shape"),
        (lambda t: {**t, "data": t["data"][:-4]}, "candidates.features.data"),
        (lambda t: {**t, "data": np.full(len(t["data"]) // 4, np.nan, "<f4").tobytes()}, "candidates.features[0][0]"),
        (lambda t: {**t, "dtype": "float64"}, "candidates.features.dtype"),
        (lambda t: {**t, "shape": [1]}, "candidates.features.shape"),
    ],
)
def test_bad_tensors_name_their_field(
    client: TestClient, make_request: Callable[..., dict[str, Any]], change: Callable[[dict], dict], field: str
) -> None:
    body = with_tensors(make_request(n_candidates=20))
    body["candidates"]["features"] = change(body["candidates"]["features"])
    answer = client.post("/v1/rank", content=msgspec.msgpack.encode(body), headers={"content-type": MSGPACK})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["field"] == field


def test_malformed_msgpack_is_400(client: TestClient) -> None:
    answer = client.post("/v1/rank", content=b"\xc1\xff\x00", headers={"content-type": MSGPACK})
    assert answer.status_code == 400
    assert "msgpack" in answer.json()["detail"]


def test_feedback_accepts_msgpack(client: TestClient, make_request: Callable[..., dict[str, Any]]) -> None:
    served = client.post("/v1/rank", json=make_request(n_candidates=20)).json()
    event = {"request_id": served["request_id"], "rewards": {"watch_time": 3.5}}
    answer = client.post("/v1/feedback", content=msgspec.msgpack.encode(event), headers={"content-type": MSGPACK})
    assert answer.status_code == 202, answer.text
