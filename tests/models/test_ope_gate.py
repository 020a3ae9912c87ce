"""The loop's promotion gate on a real log: decisions served by the real app, rewards from simulated
users through POST /v1/feedback, joined, and judged off-policy (models/ope)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from export.checkpoint import load_checkpoint
from export.store import active_version, bundle_path, read_manifest, set_active
from models.log_reader import DecisionReader, FeedbackReader
from models.logged_a3c import LoggedTransitions, build_transitions
from models.ope_gate import GateConfig, judge
from models.reward_join import JoinConfig, RewardJoiner
from models.sim.config import SimConfig
from models.sim.requests import rank_request, served_responses
from models.sim.simulator import Simulator
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import wait_for_stream


@pytest.fixture
def exploring_store(store: Path, tmp_path: Path) -> Path:
    """The session's demo bundle, copied into a store where it explores on every request."""
    source = bundle_path(store, "demo", active_version(store, "demo"))
    target = tmp_path / "store" / "demo" / source.name
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["fusion"]["exploration"]["probability"] = 1.0  # the manifest is not hashed; its files are
    (target / "manifest.json").write_text(json.dumps(manifest))
    set_active(tmp_path / "store", "demo", source.name)
    return tmp_path / "store"


@pytest.fixture
def logged(exploring_store: Path, settings: Settings, redis_client: redis.Redis) -> LoggedTransitions:
    """300 served requests with the simulated users' sampled feedback, joined by request id."""
    configured = settings.model_copy(update={"store": exploring_store, "reward_window_seconds": 60.0})
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
    decisions = DecisionReader(redis_client, configured.decision_stream, "gate", "g")
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


def test_a_deliberately_worse_candidate_is_refused(exploring_store: Path, logged: LoggedTransitions) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))
    worse = load_checkpoint(bundle, read_manifest(bundle))
    n_objectives = worse.config.n_objectives
    with torch.no_grad():
        # Push every power w_j towards 0: the fused score stops telling good items from bad ones.
        worse.fusion.net[-1].bias[:n_objectives] -= 2.0

    verdict = judge(active, worse, logged, GateConfig(margin=0.0, min_ess=10.0))

    assert len(logged) == 300  # every decision explored, so every one is usable
    assert verdict.publish is False
    assert verdict.candidate.value < verdict.active.value
    assert verdict.as_dict()["gate"] == "refuse"


def test_the_active_version_itself_does_not_clear_a_positive_margin(
    exploring_store: Path, logged: LoggedTransitions
) -> None:
    bundle = bundle_path(exploring_store, "demo", active_version(exploring_store, "demo"))
    active = load_checkpoint(bundle, read_manifest(bundle))

    verdict = judge(active, active, logged, GateConfig(margin=0.02))

    assert verdict.candidate.value == pytest.approx(verdict.active.value)
    assert verdict.candidate.ess == pytest.approx(300, rel=1e-3)  # the log is the active version's own
    assert verdict.publish is False
