"""A bundle with ResAct and per-item (EnhancedRL) fusion actors, served: logged draws replay exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from export.manifest import RESACT_GRAPH, Manifest
from export.store import publish
from models.actor_bundle import build_actor_bundle
from models.sim.requests import rank_request
from models.sim.simulator import Simulator
from service import decision_record
from service.app import create_app
from service.settings import Settings
from tests.export.test_actor_graphs import TINY
from tests.redis_streams import wait_for_stream
from tests.versions import add_version, private_store


@pytest.fixture(scope="module")
def actor_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bundle = tmp_path_factory.mktemp("actor-bundle") / "seed0"
        build_actor_bundle(bundle, seed=0, config=TINY)
        store = tmp_path_factory.mktemp("actor-store")
        return store, publish(bundle, store, activate=True)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def actor_client(settings: Settings, actor_store: tuple[Path, Manifest]) -> Iterator[TestClient]:
    store, manifest = actor_store
    with TestClient(create_app(settings.model_copy(update={"store": store, "policy": manifest.policy}))) as client:
        yield client


def _body(manifest: Manifest, n: int = 25) -> dict[str, Any]:
    """A simulated request; the actor bundle's context also carries session features (zero here: a first request)."""
    body = rank_request(Simulator(TINY.offline.sim, seed=0), np.random.default_rng(n), n_candidates=n, k=5)
    width = manifest.feature_schema.context_dim
    body["context"] = (body["context"] + [0.0] * width)[:width]
    return body


def test_resact_serves_the_fusion_weights_and_a_logged_decision_replays_exactly(
    actor_client: TestClient, actor_store: tuple[Path, Manifest], settings: Settings, redis_client: redis.Redis
) -> None:
    store, manifest = actor_store
    body = _body(manifest)
    answer = actor_client.post("/v1/fusion", json={"user": body["user"], "context": body["context"]})
    assert answer.status_code == 200, answer.text
    served = answer.json()

    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    assert record.resact is not None
    actor = manifest.actors[RESACT_GRAPH]
    assert np.asarray(record.resact.latents).shape == (actor.n_draws, actor.latent_dim)
    assert record.resact.action == list(served["weights"].values())
    assert record.log_prob == 0.0 and served["log_prob"] == 0.0

    # Replay from the record alone: the same graph, the logged state and draws → the same action.
    graph = store / manifest.policy / manifest.version / manifest.graphs[actor.graph].file
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    replayed, _, q, choice = session.run(
        None,
        {
            "user": np.asarray([record.user_features], dtype=np.float32),
            "context": np.asarray([record.context], dtype=np.float32),
            "latents": np.asarray([record.resact.latents], dtype=np.float32),
        },
    )
    assert replayed[0].tolist() == record.resact.action
    assert int(choice[0]) == record.resact.choice == int(np.argmax(q[0]))


def test_per_item_weights_come_from_the_item_actor(
    actor_client: TestClient, actor_store: tuple[Path, Manifest], settings: Settings, redis_client: redis.Redis
) -> None:
    _, manifest = actor_store
    body = _body(manifest, 30)
    answer = actor_client.post(
        "/v1/fusion", json={"user": body["user"], "context": body["context"], "candidates": body["candidates"]}
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert [item["id"] for item in items] == body["candidates"]["ids"]
    low, high = np.asarray(manifest.fusion.low), np.asarray(manifest.fusion.high)
    weights = np.asarray([list(item["weights"].values()) for item in items])
    assert weights.shape == (30, manifest.fusion.dim)
    assert (weights >= low - 1e-6).all() and (weights <= high + 1e-6).all()
    assert len({tuple(row) for row in weights.round(6).tolist()}) > 1  # per item, not one vector repeated

    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    assert record.item_fusion is not None
    assert record.item_fusion.actions == weights.tolist()
    assert record.candidates.ids == body["candidates"]["ids"]


def test_the_cascade_still_ranks_with_an_actor_bundle(
    actor_client: TestClient, actor_store: tuple[Path, Manifest]
) -> None:
    answer = actor_client.post("/v1/rank", json=_body(actor_store[1]))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["items"]) == 5


def test_a_shadow_of_a_per_item_fusion_call_serves_nothing_and_claims_no_actor_log(
    settings: Settings, actor_store: tuple[Path, Manifest], redis_client: redis.Redis, tmp_path: Path
) -> None:
    store, manifest = actor_store
    own = private_store(store, tmp_path / "store")
    add_version(own, "shadow-v", policy=manifest.policy)
    admin = settings.model_copy(update={"store": own, "policy": manifest.policy, "admin_token": "t"})
    body = _body(manifest, 12)
    with TestClient(create_app(admin)) as client:
        routed = client.post(
            f"/v1/admin/policies/{manifest.policy}/shadow",
            json={"version": "shadow-v"},
            headers={"authorization": "Bearer t"},
        )
        assert routed.status_code == 200, routed.text
        deadline = time.monotonic() + 10  # hang guard: the watcher applies the routing asynchronously
        while client.get("/v1/models").json()["policies"][0]["worker_serving"]["shadow"] != "shadow-v":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answer = client.post(
            "/v1/fusion", json={"user": body["user"], "context": body["context"], "candidates": body["candidates"]}
        )
        assert answer.status_code == 200, answer.text
    entries = wait_for_stream(redis_client, settings.decision_stream, 2)
    served, shadow = (decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries)
    assert served.item_fusion is not None and served.resact is not None
    assert shadow.arm == "shadow" and shadow.shadow_of == served.request_id
    assert shadow.served_ids == [] and shadow.item_fusion is None and shadow.resact is None
