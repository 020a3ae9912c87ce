"""A bundle's manifest names the world it was trained in; the load test and the evaluation rebuild it."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from models.sim.config import SimConfig
from models.sim.world import SimulatorV2, simulator_in, trained_world, v2_sim_config


def _training(world: str | None, seed: int, config: SimConfig) -> dict[str, Any]:
    # As the manifest stores it: JSON, so the config's tuples come back as lists.
    training: dict[str, Any] = {"seed": seed, "simulator": asdict(config)}
    if world is not None:
        training["world"] = world
    return dict(json.loads(json.dumps(training)))


def test_a_v21_manifest_rebuilds_the_same_world_with_its_widths() -> None:
    config = v2_sim_config()
    sim, recorded = trained_world(_training("v2.1", 3, config))
    expected = simulator_in("v2.1", config, 3)
    assert isinstance(sim, SimulatorV2)
    assert recorded == config
    assert sim.user_features.shape == expected.user_features.shape
    np.testing.assert_array_equal(sim.user_features, expected.user_features)
    np.testing.assert_array_equal(sim.item_features, expected.item_features)
    assert sim.item_ids(np.arange(5)) == expected.item_ids(np.arange(5))


def test_a_manifest_without_a_world_is_v1() -> None:
    sim, _ = trained_world(_training(None, 0, SimConfig()))
    assert not isinstance(sim, SimulatorV2)
    np.testing.assert_array_equal(sim.user_features, simulator_in("v1", SimConfig(), 0).user_features)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"seed": 0}, "does not say which simulated world"),
        ({"simulator": {}}, "does not say which simulated world"),
        ({"seed": 0, "simulator": {}, "world": "v9"}, "unknown simulated world 'v9'"),
    ],
)
def test_a_manifest_that_names_no_known_world_is_refused(training: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        trained_world(training)
