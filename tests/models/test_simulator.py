from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.sim.config import SimConfig
from models.sim.requests import rank_request, served_responses, user_index, write_example_request
from models.sim.simulator import Simulator


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(SimConfig(), seed=0)


def test_same_seed_gives_same_world_and_requests() -> None:
    a, b, other = Simulator(seed=3), Simulator(seed=3), Simulator(seed=4)
    assert np.array_equal(a.user_features, b.user_features)
    assert np.array_equal(a.item_features, b.item_features)
    assert not np.allclose(a.item_features, other.item_features)
    ra = a.sample_requests(4, 50, np.random.default_rng(1))
    rb = b.sample_requests(4, 50, np.random.default_rng(1))
    assert np.array_equal(ra.candidates, rb.candidates) and np.array_equal(ra.context, rb.context)
    pa = a.predictions(ra.users, ra.candidates, ra.context, np.random.default_rng(2))
    pb = b.predictions(rb.users, rb.candidates, rb.context, np.random.default_rng(2))
    assert np.array_equal(pa, pb)


def test_requests_have_the_configured_shapes_and_distinct_candidates(sim: Simulator) -> None:
    cfg = sim.config
    requests = sim.sample_requests(8, 300, np.random.default_rng(0))
    assert requests.user_features.shape == (8, cfg.user_dim) and requests.user_features.dtype == np.float32
    assert requests.context.shape == (8, cfg.context_dim)
    assert requests.candidates.shape == (8, 300)
    assert all(len(set(row)) == 300 for row in requests.candidates.tolist())
    assert requests.candidates.min() >= 0 and requests.candidates.max() < cfg.n_items
    # Context: (sin, cos) of the hour on the unit circle, then exactly one device.
    assert np.allclose(requests.context[:, 0] ** 2 + requests.context[:, 1] ** 2, 1.0, atol=1e-5)
    assert np.array_equal(requests.context[:, 2:].sum(axis=1), np.ones(8))
    predictions = sim.predictions(requests.users, requests.candidates, requests.context)
    assert predictions.shape == (8, 300, cfg.n_objectives) and predictions.dtype == np.float32
    assert (predictions > 0).all()
    assert (predictions[..., 0] <= cfg.max_watch_time).all() and (predictions[..., 1:] < 1).all()


def test_sparse_response_rates_are_near_their_base_rates(sim: Simulator) -> None:
    rng = np.random.default_rng(5)
    requests = sim.sample_requests(4000, 50, rng)
    sampled = sim.respond(requests.users, requests.candidates, requests.context, rng).sampled
    rates = sampled.reshape(-1, sim.config.n_objectives).mean(axis=0)
    for j, (name, base) in enumerate(zip(sim.config.objectives, sim.config.base_rates, strict=True)):
        if name in sim.config.dense_objectives:
            assert 0.5 < rates[j] < sim.config.max_watch_time, name
            assert (sampled[..., j] > 0).all()
        else:
            assert set(np.unique(sampled[..., j])) <= {0.0, 1.0}
            assert 0.8 * base < rates[j] < 1.2 * base, (name, rates[j], base)


def test_predictions_are_noisy_estimates_of_expected_responses(sim: Simulator) -> None:
    rng = np.random.default_rng(6)
    requests = sim.sample_requests(200, 100, rng)
    expected = sim.expected_responses(requests.users, requests.candidates, requests.context)
    predictions = sim.predictions(requests.users, requests.candidates, requests.context, rng)
    for j in range(sim.config.n_objectives):
        corr = np.corrcoef(expected[..., j].ravel(), predictions[..., j].ravel())[0, 1]
        assert 0.8 < corr < 0.9999, (sim.config.objectives[j], corr)


def test_objectives_prefer_different_items(sim: Simulator) -> None:
    # Fusion only matters if the best item for watch time is often not the best for follows.
    requests = sim.sample_requests(500, 50, np.random.default_rng(7))
    expected = sim.expected_responses(requests.users, requests.candidates, requests.context)
    best = expected.argmax(axis=1)  # [B, objectives]
    watch, follow = sim.config.objectives.index("watch_time"), sim.config.objectives.index("follow")
    assert (best[:, watch] != best[:, follow]).mean() > 0.7


def test_reward_is_the_business_weighted_sum_over_served_items(sim: Simulator) -> None:
    responses = np.zeros((2, 3, sim.config.n_objectives))
    responses[0, 0] = [1.5, 1, 0, 0, 0]
    responses[0, 2] = [0.5, 0, 1, 0, 1]
    responses[1, 1] = [2.0, 0, 0, 1, 0]
    w = sim.business_weights
    expected = [
        1.5 + w["like"] + 0.5 + w["follow"] + w["comment"],
        2.0 * w["watch_time"] + w["share"],
    ]
    assert np.allclose(sim.reward(responses), expected)


def test_rank_request_is_the_http_body_the_service_accepts(sim: Simulator) -> None:
    body = rank_request(sim, np.random.default_rng(0), n_candidates=120, k=7)
    assert set(body) == {"user", "context", "candidates", "k"}
    assert set(body["user"]) == {"id", "features"} and set(body["candidates"]) == {
        "ids",
        "features",
        "predictions",
    }
    cfg = sim.config
    assert body["k"] == 7
    assert len(body["user"]["features"]) == cfg.user_dim and len(body["context"]) == cfg.context_dim
    ids = body["candidates"]["ids"]
    assert len(ids) == 120 == len(set(ids)) and all(i.startswith("i") for i in ids)
    assert [len(row) for row in body["candidates"]["features"]] == [cfg.item_dim] * 120
    assert [len(row) for row in body["candidates"]["predictions"]] == [cfg.n_objectives] * 120
    assert all(type(x) is float for x in body["candidates"]["features"][0] + body["user"]["features"])
    # The features are the catalogue's (rounded for JSON), so ids and rows agree.
    rows = [int(i[1:]) for i in ids]
    assert np.allclose(body["candidates"]["features"], sim.item_features[rows], atol=1e-5)
    assert json.loads(json.dumps(body)) == body


def test_rank_request_for_a_given_user(sim: Simulator) -> None:
    body = rank_request(sim, np.random.default_rng(0), n_candidates=5, user_id="u42")
    assert body["user"]["id"] == "u42"
    assert np.allclose(body["user"]["features"], sim.user_features[42], atol=1e-5)
    assert user_index(sim, "someone@example") == user_index(sim, "someone@example")
    other = rank_request(sim, np.random.default_rng(0), n_candidates=5, user_id="someone@example")
    assert other["user"]["id"] == "someone@example"


def test_served_responses_follow_the_request(sim: Simulator) -> None:
    body = rank_request(sim, np.random.default_rng(1), n_candidates=30)
    served = body["candidates"]["ids"][:4]
    feedback = served_responses(sim, body, served, np.random.default_rng(2))
    assert len(feedback) == 4
    assert all(list(item) == list(sim.config.objectives) for item in feedback)
    assert all(item["watch_time"] > 0 and item["like"] in (0.0, 1.0) for item in feedback)


def test_example_request_file_round_trips(tmp_path: Path, sim: Simulator) -> None:
    path = write_example_request(tmp_path / "sub" / "rank.json", seed=0, n_candidates=40, sim=sim)
    assert json.loads(path.read_text()) == rank_request(sim, np.random.default_rng(0), n_candidates=40)


def test_simulator_imports_without_torch() -> None:
    code = "import sys, models.sim, models.sim.requests; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
