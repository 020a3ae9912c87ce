from __future__ import annotations

import numpy as np
import pytest

from models.sim.config import SimConfig
from models.sim.session import SessionConfig, Sessions
from models.sim.simulator import Simulator

CONFIG = SimConfig(n_users=500, n_items=400, session_features=("depth", "satisfaction"))


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(CONFIG, seed=3)


def _serve(sim: Simulator, sessions: Sessions, best: bool) -> np.ndarray:
    """Serve the 10 candidates with the highest (best) or lowest expected watch time."""
    requests = sessions.requests()
    watch = sim.expected_responses(requests.users, requests.candidates, requests.context)[..., 0]
    order = np.argsort(-watch if best else watch, axis=1)[:, :10]
    return np.take_along_axis(requests.candidates, order, axis=1)


def _mean_depth(sim: Simulator, best: bool) -> float:
    sessions = Sessions(sim, 300, np.random.default_rng(0), refill=False, n_candidates=100)
    depth = np.zeros(300)
    while sessions.active.any():
        active = sessions.active.copy()
        requests = sessions.requests()
        sessions.step(requests, _serve(sim, sessions, best))
        depth[active] += 1
    return float(depth.mean())


def test_unsatisfying_requests_make_users_leave_sooner(sim: Simulator) -> None:
    assert _mean_depth(sim, best=True) > 1.5 * _mean_depth(sim, best=False)


def test_sessions_end_at_max_depth_and_refill_with_new_users(sim: Simulator) -> None:
    config = SessionConfig(max_depth=3, leave_bias=-30.0)  # nobody leaves before the cap
    sessions = Sessions(sim, 50, np.random.default_rng(1), config, n_candidates=100)
    for t in range(3):
        requests = sessions.requests()
        step = sessions.step(requests, requests.candidates[:, :10])
        assert step.done.all() == (t == 2)
        assert step.objective_rewards.shape == (50, CONFIG.n_objectives)
    assert (sessions.depth == 0).all()  # every slot restarted


def test_session_features_are_appended_to_the_context_the_policy_sees(sim: Simulator) -> None:
    sessions = Sessions(sim, 4, np.random.default_rng(2), n_candidates=100)
    assert CONFIG.context_columns[-2:] == ["session_depth", "session_satisfaction"]
    assert CONFIG.observed_context_dim == CONFIG.context_dim + 2
    features = sessions.session_features()
    assert features.shape == (4, 2) and np.allclose(features[:, 1], sessions.config.reference)
    assert SimConfig().observed_context_dim == SimConfig().context_dim  # request-level worlds unchanged
