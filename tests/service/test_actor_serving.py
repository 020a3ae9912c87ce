"""A bundle with ResAct and per-item (EnhancedRL) fusion actors, served: logged draws replay exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.decision_record import ItemFusionLog, ResActLog
from contracts.manifest import FUSION_GRAPH, RANK_BY_ACTION_GRAPH, RESACT_GRAPH, Manifest
from export.signing import demo_signing_key, publish_signed
from models.sim.requests import rank_request
from models.sim.simulator import Simulator
from pipelines.actor_bundle import build_actor_bundle
from service.app import create_app
from service.bundle import load_bundle
from service.cascade import UserState, synthetic_inputs
from service.exploration import NoiseSource
from service.settings import Settings
from tests.export.test_actor_graphs import TINY
from tests.redis_streams import wait_for_stream
from tests.service.scored_records import encoded_record
from tests.versions import add_version, private_store


@pytest.fixture(scope="module")
def actor_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bundle = tmp_path_factory.mktemp("actor-bundle") / "seed0"
        build_actor_bundle(bundle, seed=0, config=TINY)
        store = tmp_path_factory.mktemp("actor-store")
        return store, publish_signed(bundle, store, demo_signing_key(store), activate=True)
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
    assert record.resact.action.tolist() == list(served["weights"].values())
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
    assert replayed[0].tolist() == record.resact.action.tolist()
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
    assert record.item_fusion.actions.tolist() == weights.tolist()
    assert record.candidates.ids == body["candidates"]["ids"]


def test_a_rank_served_by_resact_logs_its_latents_and_replays_from_its_record_alone(
    settings: Settings, actor_store: tuple[Path, Manifest], redis_client: redis.Redis
) -> None:
    store, manifest = actor_store
    logging = settings.model_copy(update={"store": store, "policy": manifest.policy, "log_candidate_features": True})
    body = _body(manifest, 40)
    with TestClient(create_app(logging)) as client:
        answer = client.post("/v1/rank", json=body)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert len(served["items"]) == 5 and served["explored"] is False and served["log_prob"] == 0.0

    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    assert record.kind == "rank" and record.resact is not None
    actor = manifest.actors[RESACT_GRAPH]
    assert np.asarray(record.resact.latents).shape == (actor.n_draws, actor.latent_dim)
    assert list(served["fusion_weights"].values()) == record.resact.action.tolist() == record.fusion.action.tolist()
    assert record.served_ids == [item["id"] for item in served["items"]]

    # Replay from the record alone: its state and draws → ResAct's action; that action, its candidates and k
    # → the same ranking through the bundle's rank_by_action graph.
    folder = store / manifest.policy / manifest.version
    user = np.asarray([record.user_features], dtype=np.float32)
    context = np.asarray([record.context], dtype=np.float32)
    resact = ort.InferenceSession(str(folder / manifest.graphs[RESACT_GRAPH].file), providers=["CPUExecutionProvider"])
    action, _, _, choice = resact.run(
        None, {"user": user, "context": context, "latents": np.asarray([record.resact.latents], dtype=np.float32)}
    )
    assert action[0].tolist() == record.resact.action.tolist() and int(choice[0]) == record.resact.choice
    ranking = ort.InferenceSession(
        str(folder / manifest.graphs[RANK_BY_ACTION_GRAPH].file), providers=["CPUExecutionProvider"]
    )
    top, scores, *_ = ranking.run(
        None,
        {
            "user": user,
            "context": context,
            "item_features": np.asarray(record.candidates.features, dtype=np.float32),
            "mtl_predictions": np.asarray(record.candidates.predictions, dtype=np.float32),
            "stage_sizes": np.asarray([stage.keep for stage in record.stages], dtype=np.int64),
            "k": np.asarray([record.k], dtype=np.int64),
            "fusion_action": action,
        },
    )
    assert [record.candidates.ids[i] for i in top.tolist()] == record.served_ids
    assert scores.tolist() == record.served_scores.tolist()


def test_ranking_with_resact_follows_the_draws(
    actor_client: TestClient, actor_store: tuple[Path, Manifest], settings: Settings, redis_client: redis.Redis
) -> None:
    body = _body(actor_store[1], 40)
    answers = [actor_client.post("/v1/rank", json=body) for _ in range(6)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    records = [
        decision_record.decode(fields[decision_record.STREAM_FIELD])
        for _, fields in wait_for_stream(redis_client, settings.decision_stream, 6)
    ]
    # Same request, fresh draws each time: ResAct's choice (and so its action) is a function of the draws.
    assert all(r.resact is not None for r in records)
    assert len({tuple(r.resact.action) for r in records if r.resact is not None}) > 1


def test_a_shadow_of_a_per_item_fusion_call_serves_nothing_and_logs_only_its_own_resact_decision(
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
    assert shadow.served_ids == [] and shadow.item_fusion is None
    # The shadow (a copy of the served bundle, so it has its own ResAct) decides on the served draws; its log
    # is its own graph's answer to them.
    assert shadow.resact is not None and np.array_equal(shadow.resact.latents, served.resact.latents)
    graph = own / manifest.policy / "shadow-v" / manifest.graphs[RESACT_GRAPH].file
    action, *_ = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(
        None,
        {
            "user": np.asarray([shadow.user_features], dtype=np.float32),
            "context": np.asarray([shadow.context], dtype=np.float32),
            "latents": np.asarray([shadow.resact.latents], dtype=np.float32),
        },
    )
    assert shadow.resact.action.tolist() == action[0].tolist()


def test_a_resact_fusion_call_logs_the_served_action_and_the_fusion_graphs_novelty(
    actor_client: TestClient, actor_store: tuple[Path, Manifest], settings: Settings, redis_client: redis.Redis
) -> None:
    store, manifest = actor_store
    body = _body(manifest, 15)
    answer = actor_client.post("/v1/fusion", json={"user": body["user"], "context": body["context"]})
    assert answer.status_code == 200, answer.text
    served = answer.json()

    (entry,) = wait_for_stream(redis_client, settings.decision_stream, 1)
    record = decision_record.decode(entry[1][decision_record.STREAM_FIELD])
    assert record.resact is not None and served["explored"] is False and record.explored is False
    # As on a ResAct rank: the served action as mean, raw and action; std and noise 0 (the draws are the latents).
    weights = list(served["weights"].values())
    fusion = record.fusion
    assert all(a.tolist() == weights for a in (fusion.action, fusion.mean, fusion.raw_action, record.resact.action))
    assert fusion.std.tolist() == fusion.noise.tolist() == [0.0] * manifest.fusion.dim
    folder = store / manifest.policy / manifest.version
    fusion = ort.InferenceSession(str(folder / manifest.graphs[FUSION_GRAPH].file), providers=["CPUExecutionProvider"])
    *_, novelty = fusion.run(
        None,
        {
            "user": np.asarray([record.user_features], dtype=np.float32),
            "context": np.asarray([record.context], dtype=np.float32),
            "fusion_noise": np.zeros((1, manifest.fusion.dim), dtype=np.float32),
        },
    )
    assert float(novelty[0]) == record.novelty == served["novelty"]


def test_the_record_check_refuses_a_non_finite_resact_or_per_item_output(actor_store: tuple[Path, Manifest]) -> None:
    # With logging on, the record's check is the only finiteness test of what a request serves
    # (service/ranker.py): ResAct's and per-item fusion's outputs go through it too.
    store, manifest = actor_store
    bundle = load_bundle(store / manifest.policy / manifest.version)
    n = 25
    inputs = synthetic_inputs(bundle.manifest, n=n, k=5)
    state = UserState(inputs.user, inputs.context)
    source = NoiseSource(0)
    draws = bundle.fusion.draw(source)
    ranked = bundle.fusion.rank(inputs, draws)
    weighed = bundle.fusion.weights(state, draws)
    item_noise = source.item_noise(bundle.manifest, n)
    item = bundle.fusion.per_item(state, inputs.item_features, inputs.mtl_predictions, item_noise)
    assert ranked.resact is not None and weighed.resact is not None

    def record(rank: bool, resact: ResActLog, item_fusion: ItemFusionLog | None) -> bytes | None:
        outputs = ranked.outputs if rank else weighed.outputs
        return encoded_record(bundle, inputs, outputs, draws, candidates=True, resact=resact, item_fusion=item_fusion)

    item_log = ItemFusionLog(noise=item_noise, mean=item.mean, actions=item.action)
    assert record(True, ranked.resact, None) is not None
    assert record(False, weighed.resact, item_log) is not None
    for field in ("latents", "candidates", "q", "action"):
        broken = getattr(ranked.resact, field).copy()
        broken.flat[-1] = np.nan
        assert record(True, msgspec.structs.replace(ranked.resact, **{field: broken}), None) is None, field
    for field in ("noise", "mean", "actions"):
        broken = getattr(item_log, field).copy()
        broken.flat[-1] = np.inf
        assert record(False, weighed.resact, msgspec.structs.replace(item_log, **{field: broken})) is None, field
