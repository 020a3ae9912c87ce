from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from contracts.signing import DEMO_KEY_DIR
from contracts.store import active_version, bundle_path, set_active
from models.algorithms.demo_policy import DemoTraining
from models.log.reader import DecisionReader, FeedbackReader
from models.log.reward_join import JoinConfig, RewardJoiner
from models.log.transitions import LoggedTransitions, build_transitions
from models.sim.config import SimConfig
from models.sim.requests import rank_request, served_responses
from models.sim.simulator import Simulator
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import the_shard, wait_for_stream
from tests.tiny_policy import tiny_training
from tests.versions import resign


@pytest.fixture(scope="session")
def trained() -> DemoTraining:
    return tiny_training()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small networks on a shared 2-core machine: a second torch thread only adds contention (8x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def exploring_store(store: Path, tmp_path: Path) -> Path:
    """The session's demo bundle, copied into a store where it explores on every request."""
    source = bundle_path(store, "demo", active_version(store, "demo"))
    target = tmp_path / "store" / "demo" / source.name
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["fusion"]["exploration"]["probability"] = 1.0  # the manifest is not hashed; its files are
    (target / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(store / DEMO_KEY_DIR, tmp_path / "store" / DEMO_KEY_DIR)
    resign(tmp_path / "store", target)  # the changed manifest, signed again with the demo key
    set_active(tmp_path / "store", "demo", source.name)
    return tmp_path / "store"


@pytest.fixture
def logged(exploring_store: Path, settings: Settings, redis_client: redis.Redis) -> LoggedTransitions:
    """300 served requests with the simulated users' sampled feedback, joined by request id; the service logs
    the candidates' matrices, so the requests can be replayed (models/algorithms/replay_trainer.py)."""
    configured = settings.model_copy(
        update={"store": exploring_store, "reward_window_seconds": 60.0, "log_candidate_features": True}
    )
    sim = Simulator(SimConfig(), seed=0)
    rng = np.random.default_rng(11)
    with TestClient(create_app(configured)) as client:
        for _ in range(300):
            body = rank_request(sim, rng, n_candidates=100, k=5)
            served = client.post("/v1/rank", json=body).json()
            items = [item["id"] for item in served["items"]]
            for item_id, rewards in zip(items, served_responses(sim, body, items, rng), strict=True):
                answer = client.post(
                    "/v1/feedback", json={"request_id": served["request_id"], "item_id": item_id, "rewards": rewards}
                )
                assert answer.status_code == 202
    wait_for_stream(redis_client, configured.decision_stream, 300)
    decisions = DecisionReader(redis_client, the_shard(redis_client, configured.decision_stream), "gate", "g")
    feedback = FeedbackReader(redis_client, configured.feedback_stream, "gate", "g")
    joiner = RewardJoiner(JoinConfig(window_seconds=60.0, weights=sim.business_weights))
    for reader in (decisions, feedback):
        reader.ensure_group()
    for d in decisions.read_all():
        joiner.add_decision(d.record)
    for e in feedback.read_all():
        joiner.add_feedback(e.record)
    joined = joiner.close(now=float("inf")).joined
    assert len(joined) == 300 and all(j.events == 5 for j in joined)
    return build_transitions(joined)
