"""Properties of decoding, through the real app: any valid rank body is served as k distinct candidates
sorted by score; any invalid one is a 4xx problem+json naming a field, never a 5xx.

The valid bodies follow the shape GET /v1/models/demo publishes (the active bundle's widths), which is
what a client that reads the contract can know.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


def _shape(client: TestClient) -> dict[str, Any]:
    shape: dict[str, Any] = client.get("/v1/models/demo").json()["request"]
    return shape


@st.composite
def rank_bodies(draw: st.DrawFn, shape: dict[str, Any]) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=60))
    ids = draw(st.lists(st.text(min_size=1, max_size=12), min_size=n, max_size=n, unique=True))
    row = st.lists(finite, min_size=shape["item_dim"], max_size=shape["item_dim"])
    predictions = st.lists(
        st.floats(min_value=0.0, max_value=1.0, width=32),
        min_size=len(shape["objectives"]),
        max_size=len(shape["objectives"]),
    )
    body: dict[str, Any] = {
        "user": {
            "id": draw(st.text(min_size=1, max_size=20)),
            "features": draw(st.lists(finite, min_size=shape["user_dim"], max_size=shape["user_dim"])),
        },
        "candidates": {
            "ids": ids,
            "features": draw(st.lists(row, min_size=n, max_size=n)),
            "predictions": draw(st.lists(predictions, min_size=n, max_size=n)),
        },
        "k": draw(st.integers(min_value=1, max_value=n)),
    }
    if draw(st.booleans()):
        body["context"] = draw(st.lists(finite, min_size=shape["context_dim"], max_size=shape["context_dim"]))
    return body


def test_any_valid_rank_body_is_served_as_k_distinct_candidates_sorted_by_score(client: TestClient) -> None:
    shape = _shape(client)

    @EXAMPLES
    @given(body=rank_bodies(shape), msgpack=st.booleans())
    def check(body: dict[str, Any], msgpack: bool) -> None:
        if msgpack:
            content, media = msgspec.msgpack.encode(body), "application/msgpack"
        else:
            content, media = msgspec.json.encode(body), "application/json"
        response = client.post("/v1/rank", content=content, headers={"content-type": media})

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        ids = [item["id"] for item in items]
        scores = [item["score"] for item in items]
        assert len(ids) == body["k"]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(body["candidates"]["ids"])
        assert scores == sorted(scores, reverse=True)

    check()


def _break(body: dict[str, Any], how: str, shape: dict[str, Any]) -> bytes:
    """One way to make a valid body invalid, encoded as msgpack (it can carry NaN and infinities)."""
    candidates = body["candidates"]
    if how == "k above N":
        body["k"] = len(candidates["ids"]) + 1
    elif how == "k zero":
        body["k"] = 0
    elif how == "user width":
        body["user"]["features"] = body["user"]["features"][:-1]
    elif how == "item width":
        candidates["features"][0] = [*candidates["features"][0], 0.0]
    elif how == "rows short":
        candidates["predictions"] = candidates["predictions"][:-1] or [[0.0]]
        if len(candidates["ids"]) == 1:
            candidates["ids"].append(candidates["ids"][0] + "x")
    elif how == "duplicate id":
        candidates["ids"].append(candidates["ids"][0])
        candidates["features"].append(candidates["features"][0])
        candidates["predictions"].append(candidates["predictions"][0])
    elif how == "nan feature":
        candidates["features"][0][0] = float("nan")
    elif how == "inf user":
        body["user"]["features"][0] = float("inf")
    elif how == "no ids":
        body["candidates"] = {"ids": [], "features": [], "predictions": []}
    elif how == "unknown field":
        body["explore"] = True
    elif how == "wrong type":
        body["k"] = str(body["k"])
    return msgspec.msgpack.encode(body)


BREAKS = [
    "k above N",
    "k zero",
    "user width",
    "item width",
    "rows short",
    "duplicate id",
    "nan feature",
    "inf user",
    "no ids",
    "unknown field",
    "wrong type",
]


def test_any_invalid_rank_body_is_a_4xx_problem_naming_a_field(client: TestClient) -> None:
    shape = _shape(client)

    @EXAMPLES
    @given(body=rank_bodies(shape), how=st.sampled_from(BREAKS))
    def check(body: dict[str, Any], how: str) -> None:
        response = client.post(
            "/v1/rank", content=_break(body, how, shape), headers={"content-type": "application/msgpack"}
        )

        assert 400 <= response.status_code < 500, (how, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"]

    check()


@pytest.mark.parametrize("path", ["/v1/rank", "/v1/fusion", "/v1/feedback"])
def test_arbitrary_bytes_are_a_4xx_problem(client: TestClient, path: str) -> None:
    @EXAMPLES
    @given(data=st.binary(max_size=200), media=st.sampled_from(["application/json", "application/msgpack"]))
    def check(data: bytes, media: str) -> None:
        response = client.post(path, content=data, headers={"content-type": media})

        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/problem+json"

    check()
