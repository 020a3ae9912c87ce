"""The load test draws its requests from the world of the store's demo policy, whichever world that is."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from contracts.store import active_version, read_manifest
from loadtest.store_world import store_world
from models.algorithms.demo_policy import train_demo_policy
from models.sim.requests import rank_request
from models.sim.world import SimulatorV2
from pipelines.demo import publish_demo
from tests.loadtest.test_locustfile import harness
from tests.tiny_policy import tiny_contextual_config


@pytest.fixture(scope="module")
def v21_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose demo was trained in simulator v2.1, as `make run` now serves (a small search)."""
    config = tiny_contextual_config()
    store = tmp_path_factory.mktemp("v21-store")
    publish_demo(train_demo_policy(config), store, config, version="t1")
    return store


def test_the_world_of_a_v21_store_has_its_bundles_widths(v21_store: Path) -> None:
    world = store_world(v21_store)
    assert isinstance(world, SimulatorV2)
    schema = read_manifest(v21_store / "demo" / active_version(v21_store, "demo")).feature_schema
    body = rank_request(world, np.random.default_rng(0), n_candidates=20, k=6)
    assert len(body["user"]["features"]) == schema.user_dim
    assert len(body["context"]) == schema.context_dim
    assert {len(row) for row in body["candidates"]["features"]} == {schema.item_dim}


def test_a_v1_store_gives_the_v1_world(store: Path) -> None:
    assert not isinstance(store_world(store), SimulatorV2)


def test_a_store_without_the_policy_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no active version"):
        store_world(tmp_path)


@pytest.mark.e2e
def test_a_load_test_of_a_v21_store_ranks_every_kind_and_fails_nothing(v21_store: Path, tmp_path: Path) -> None:
    # Candidates by id must be in the v2.1 demo's item table, inline rows of its widths: any mismatch is a 422.
    result = harness(v21_store, tmp_path, "--seconds", "4", "--users", "3", "--spawn-rate", "3", "--no-operator")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SimulatorV2" in result.stdout + result.stderr  # the locustfile says which world it draws from
    assert re.search(r"all HTTP requests: [1-9]\d*, failures: 0\b", result.stdout), result.stdout
