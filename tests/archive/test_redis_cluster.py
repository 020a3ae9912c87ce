"""Serving, archiving and the join against a real 3-master Redis Cluster on loopback.

The service connects with the cluster client (a `redis+cluster://` URL); its streams and routing
namespace carry one hash tag, so every script's keys share a slot; the archiver reads the streams from
the node that owns them, writes the lake and trims; DuckDB joins the lake.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.cluster
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import cascade_cli
from archive.archiver import ArchiveConfig, Archiver
from archive.connect import connect
from archive.sources import service_sources
from contracts.routing import routing_key
from contracts.store import read_manifest
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig
from service.app import create_app
from service.settings import Settings
from tests.feedback_posting import post_feedback
from tests.redis_cluster import redis_cluster
from tests.redis_streams import stream_length


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as ports:
        yield f"redis+cluster://127.0.0.1:{ports[0]}"


@pytest.mark.e2e
def test_serving_archiving_and_the_join_run_on_a_redis_cluster(
    cluster_url: str, store: Path, tmp_path: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    settings = Settings(
        store=store,
        redis_url=cluster_url,
        decision_stream="{cascade}:decisions",
        feedback_stream="{cascade}:feedback",
        routing_namespace="{cascade}",
        log_spool_dir=tmp_path / "spool",
        exploration_seed=0,
    )
    client = connect(cluster_url)
    assert isinstance(client, redis.cluster.RedisCluster) and len(client.get_nodes()) == 3
    with TestClient(create_app(settings)) as app:
        ids = []
        for _ in range(5):
            answer = app.post("/v1/rank", json=make_request(n_candidates=40, k=3))
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        for request_id in ids[:3]:
            post_feedback(app, request_id, {"like": 1.0})
        assert app.get("/readyz").json()["redis"] == "ok"

    lake = tmp_path / "lake"
    deadline = time.monotonic() + 10  # hang guard: the writer is asynchronous (it flushed at shutdown)
    while stream_length(client, settings.decision_stream) < 5:  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sources = service_sources(client, settings.decision_stream, settings.feedback_stream)
    assert Archiver(client, sources, ArchiveConfig(lake, "archiver", "c")).drain() == 5 + 3
    assert stream_length(client, settings.decision_stream) == 0 and client.xlen(settings.feedback_stream) == 0  # type: ignore[arg-type]

    joined = join_lake(lake, JoinConfig(window_seconds=600, weights={"like": 2.0}), time.time() + 601).joined
    assert {j.decision.request_id: j.reward for j in joined} == {
        ids[0]: 2.0,
        ids[1]: 2.0,
        ids[2]: 2.0,
        ids[3]: 0.0,
        ids[4]: 0.0,
    }
    client.close()


@pytest.mark.e2e
def test_publish_activates_a_version_through_the_cluster_client(
    cluster_url: str, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = next(path for path in (store / "demo").iterdir() if (path / "manifest.json").is_file())
    for name, value in {
        "REDIS_URL": cluster_url,
        "CASCADE_DECISION_STREAM": "{cascade}:decisions",
        "CASCADE_FEEDBACK_STREAM": "{cascade}:feedback",
        "CASCADE_ROUTING_NAMESPACE": "{cascade}",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cascade_cli.app, ["publish", str(bundle), "--store", str(tmp_path / "store")])
    assert result.exit_code == 0, result.output
    client = connect(cluster_url)
    try:
        active = client.hget(routing_key("{cascade}", "demo"), "active")
        assert active == read_manifest(bundle).version.encode()
    finally:
        client.close()
