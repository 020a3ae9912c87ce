"""ResAct from the log, end to end: the demo policy serves and logs, simulated users send feedback, the
archiver moves both streams into the Parquet lake, rewards are joined there (DuckDB), ResAct trains on the
joined log, its version is published and activated through the admin API, and the next rank is served by
ResAct with its latents logged."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from archive.archiver import ArchiveConfig, Archiver
from archive.sources import service_sources
from contracts import decision_record
from contracts.manifest import RANK_BY_ACTION_GRAPH, RESACT_GRAPH
from contracts.store import active_version, bundle_path
from export.signing import demo_signing_key, publish_signed
from models.algorithms.resact import ResActConfig
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig
from models.log.transitions import offline_log
from models.sim.config import SimConfig
from models.sim.requests import rank_request, served_responses
from models.sim.simulator import Simulator
from pipelines.resact_from_log import resact_version_from_lake
from service.app import create_app
from service.settings import Settings
from tests.redis_streams import wait_for_stream
from tests.versions import private_store

USERS, VISITS = 8, 5  # each user's visits fall in one session: ResAct gets s' within sessions


def _post_feedback(client: TestClient, payload: dict[str, object]) -> None:
    deadline = time.monotonic() + 10  # hang guard: the decision is logged asynchronously, 404 until it is
    while (answer := client.post("/v1/feedback", json=payload)).status_code == 404:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)
    assert answer.status_code == 202, answer.text


@pytest.mark.e2e
def test_resact_trained_on_the_redis_log_serves_the_next_rank(
    settings: Settings, store: Path, redis_client: redis.Redis, tmp_path: Path
) -> None:
    own = private_store(store, tmp_path / "store")
    admin = settings.model_copy(update={"store": own, "admin_token": "t"})
    sim = Simulator(SimConfig(), seed=0)
    rng = np.random.default_rng(5)
    with TestClient(create_app(admin)) as client:
        for _visit in range(VISITS):
            for user in range(USERS):
                body = rank_request(sim, rng, n_candidates=60, k=5, user_id=f"user-{user}")
                served = client.post("/v1/rank", json=body).json()
                items = [item["id"] for item in served["items"]]
                rewards = served_responses(sim, body, items, rng)
                for item_id, signals in zip(items, rewards, strict=True):
                    _post_feedback(client, {"request_id": served["request_id"], "item_id": item_id, "rewards": signals})

        # The trainer's side: the archiver drains both streams into the lake; rewards are joined there once
        # every window has closed.
        lake = tmp_path / "lake"
        sources = service_sources(redis_client, settings.decision_stream, settings.feedback_stream)
        assert Archiver(redis_client, sources, ArchiveConfig(lake, "archiver", "test")).drain() == USERS * VISITS * 6
        join = JoinConfig(window_seconds=600, weights=sim.business_weights)
        now = time.time() + 601
        joined = join_lake(lake, join, now).joined
        assert len(joined) == USERS * VISITS and all(j.events == 5 for j in joined)
        log = offline_log(joined)
        assert len(np.unique(log.session_ids)) == USERS and int(log.done.sum()) == USERS

        source = bundle_path(own, "demo", active_version(own, "demo"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            config = ResActConfig(steps=150, batch=32, hidden=32)
            manifest = resact_version_from_lake(source, tmp_path / "resact-v", "resact-v", lake, join, config, now)
        finally:
            torch.set_num_threads(threads)
        assert {RESACT_GRAPH, RANK_BY_ACTION_GRAPH} <= set(manifest.actors)
        learned = manifest.training["resact_from_log"]
        assert isinstance(learned, dict) and learned["decisions"] == USERS * VISITS
        before, after = learned["reconstruction_error"]
        assert after < before  # the CVAE learned to reconstruct the logged online actions

        publish_signed(tmp_path / "resact-v", own, demo_signing_key(own), activate=False)
        headers = {"authorization": "Bearer t"}
        routed = client.post("/v1/admin/policies/demo/activate", json={"version": "resact-v"}, headers=headers)
        assert routed.status_code == 200, routed.text
        deadline = time.monotonic() + 10  # hang guard: the watcher applies the routing asynchronously
        while client.get("/v1/models").json()["policies"][0]["worker_serving"]["active"] != "resact-v":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answer = client.post("/v1/rank", json=rank_request(sim, rng, n_candidates=60, k=5, user_id="user-0"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "resact-v"

    entries = wait_for_stream(redis_client, settings.decision_stream, 1)  # the archived ones were trimmed
    last = decision_record.decode(entries[-1][1][decision_record.STREAM_FIELD])
    assert last.version == "resact-v" and last.resact is not None
    served = list(answer.json()["fusion_weights"].values())
    assert last.fusion.action.tolist() == last.resact.action.tolist() == served
