"""POST /v1/rank against the real app, real onnxruntime and real Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.store import active_version
from service.settings import Settings
from tests.redis_streams import wait_for_stream


def test_rank_returns_k_candidates_sorted_by_score_with_version(
    client: TestClient, settings: Settings, make_request: Callable[..., dict[str, Any]]
) -> None:
    body = make_request(n_candidates=1000, k=10)
    response = client.post("/v1/rank", json=body)

    assert response.status_code == 200, response.text
    result = response.json()
    ids = [item["id"] for item in result["items"]]
    scores = [item["score"] for item in result["items"]]
    assert len(ids) == 10
    assert len(set(ids)) == 10
    assert set(ids) <= set(body["candidates"]["ids"])
    assert scores == sorted(scores, reverse=True)
    assert result["policy"] == "demo"
    assert result["version"] == active_version(settings.store, "demo")
    assert set(result["fusion_weights"]) == {f"{p}_{o}" for p in "wb" for o in _objectives(settings)}
    survivors = result["stage_survivors"]
    assert 1000 >= survivors["matching"] >= survivors["pre_ranking"] >= survivors["ranking"] >= 10


def test_each_request_appends_exactly_one_complete_decision_record(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    bodies = [make_request(n_candidates=n, k=5) for n in (5, 120, 1000)]
    responses = [client.post("/v1/rank", json=body).json() for body in bodies]

    entries = wait_for_stream(redis_client, settings.decision_stream, len(bodies))

    assert len(entries) == len(bodies)
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    assert [r.request_id for r in records] == [r["request_id"] for r in responses]
    for record, body, response in zip(records, bodies, responses, strict=True):
        # Every contract field is present and typed (decode is strict); check the values agree.
        assert record.schema_version == decision_record.SCHEMA_VERSION
        assert record.user_id == body["user"]["id"]
        assert record.version == response["version"]
        assert record.arm == "control"
        assert record.served_ids == [item["id"] for item in response["items"]]
        assert record.candidates.ids == body["candidates"]["ids"]
        assert len(record.candidates.digest) == 64
        assert [s.name for s in record.stages] == ["matching", "pre_ranking", "ranking"]
        assert record.log_prob == response["log_prob"]
        assert record.explored == response["explored"]
        assert record.fusion.action.tolist() == list(response["fusion_weights"].values())
        assert len(record.fusion.noise) == len(record.fusion.names)
        # The state is logged as the float32 values the graph saw.
        np.testing.assert_allclose(record.user_features, body["user"]["features"], rtol=1e-6)


def test_served_rows_follow_the_logged_action_when_replayed(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    """The record's latent draws reproduce the decision: same noise in, same items out."""
    from service.cascade import CascadeInputs, run_cascade
    from service.registry import Registry

    body = make_request(n_candidates=300, k=7)
    served = client.post("/v1/rank", json=body).json()
    ((_, fields),) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(fields[decision_record.STREAM_FIELD])

    registry = Registry(settings.store)
    bundle = registry.load_active("demo").active
    inputs = CascadeInputs(
        user=np.asarray([record.user_features], dtype=np.float32),
        context=np.asarray([record.context], dtype=np.float32),
        item_features=np.asarray(body["candidates"]["features"], dtype=np.float32),
        mtl_predictions=np.asarray(body["candidates"]["predictions"], dtype=np.float32),
        k=record.k,
    )
    replay = run_cascade(bundle.session, bundle.manifest, inputs, np.asarray([record.fusion.noise], np.float32))
    replayed_ids = [body["candidates"]["ids"][i] for i in replay.top_indices.tolist()]
    assert replayed_ids == record.served_ids == [item["id"] for item in served["items"]]
    assert float(replay.log_prob[0]) == record.log_prob


def _objectives(settings: Settings) -> list[str]:
    from contracts.store import bundle_path, read_manifest

    manifest = read_manifest(bundle_path(settings.store, "demo", active_version(settings.store, "demo")))
    return manifest.feature_schema.objectives
