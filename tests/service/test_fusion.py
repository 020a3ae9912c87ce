"""POST /v1/fusion: the fusion actor's weights alone, logged like any decision."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from service.settings import Settings
from tests.redis_streams import wait_for_stream
from tests.service.first_response import first_answer


def fusion_body(rank_body: dict[str, Any]) -> dict[str, Any]:
    return {"user": rank_body["user"], "context": rank_body["context"]}


def test_fusion_weights_are_the_ones_a_ranking_serves(
    settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    """Same user state, same exploration draw → the weights /v1/rank fused with."""
    body = make_request(n_candidates=100)
    ranked = first_answer(settings, "/v1/rank", json.dumps(body).encode(), "application/json").json()
    fused = first_answer(settings, "/v1/fusion", json.dumps(fusion_body(body)).encode(), "application/json")
    assert fused.status_code == 200, fused.text
    answer = fused.json()
    assert answer["weights"] == ranked["fusion_weights"]
    assert (answer["explored"], answer["log_prob"], answer["novelty"]) == (
        ranked["explored"],
        ranked["log_prob"],
        ranked["novelty"],
    )
    assert answer["items"] is None


def test_fusion_is_logged_without_candidates(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    answer = client.post("/v1/fusion", json=fusion_body(make_request(n_candidates=5))).json()
    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    assert record.kind == "fusion"
    assert record.request_id == answer["request_id"]
    assert record.stages == [] and record.served_ids == [] and record.candidates.ids == []
    assert record.fusion.action.tolist() == list(answer["weights"].values())
    assert record.log_prob == answer["log_prob"]


def test_per_item_weights_need_a_per_item_actor(
    client: TestClient, make_request: Callable[..., dict[str, Any]]
) -> None:
    body = make_request(n_candidates=5)
    answer = client.post("/v1/fusion", json={**fusion_body(body), "candidates": body["candidates"]})
    assert answer.status_code == 422
    assert answer.json()["field"] == "candidates"


def test_fusion_bad_user_is_named(client: TestClient) -> None:
    answer = client.post("/v1/fusion", json={"user": {"id": "u1", "features": [1.0]}})
    assert answer.status_code == 422
    assert answer.json()["field"] == "user.features"
