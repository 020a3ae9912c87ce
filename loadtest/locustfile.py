"""Locust users against the service: rankers (most of the traffic) and viewers that also send feedback.

Run through `python -m loadtest.run`, which starts the server; or by hand:
`locust -f loadtest/locustfile.py --host http://127.0.0.1:8000`.

Bodies are pre-generated once per process from the simulator and pre-encoded, so a request costs the
load generator a socket write, not 1,000 candidate rows of numpy → JSON: the server stays the bottleneck.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gevent
import numpy as np
import orjson
from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from models.sim.requests import rank_request, served_responses
from models.sim.simulator import Simulator

# Request names: the stats CSV has one row per name, so rank and feedback latencies stay apart.
RANK = "/v1/rank"
FEEDBACK = "/v1/feedback"

N_CANDIDATES = 1000
K = 10
POOL_SIZE = 50
# The world `cascade demo` trains on (its --seed defaults to 0); only feature realism depends on it.
SIM_SEED = int(os.environ.get("LOADTEST_SIM_SEED", "0"))

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class RankBody:
    """One rank request: the dict (to derive feedback from) and its encoded bytes (to send)."""

    body: dict[str, Any]
    encoded: bytes


@dataclass(frozen=True)
class Served:
    """What the service answered to one rank request."""

    sent: RankBody
    request_id: str
    item_ids: list[str]


@dataclass(frozen=True)
class Pool:
    sim: Simulator
    bodies: list[RankBody]


_pool: Pool | None = None


@events.init.add_listener
def _build_pool(environment: Environment, **_: Any) -> None:
    # Built in `init`, before any user spawns, so generating it (≈1 s) never counts as test time.
    global _pool
    if isinstance(environment.runner, MasterRunner):
        return  # a master sends no requests
    sim = Simulator(seed=SIM_SEED)
    rng = np.random.default_rng([SIM_SEED, os.getpid()])  # distinct bodies per worker process
    bodies = []
    for _i in range(POOL_SIZE):
        body = rank_request(sim, rng, n_candidates=N_CANDIDATES, k=K)
        bodies.append(RankBody(body, orjson.dumps(body)))
    _pool = Pool(sim, bodies)


@events.test_stop.add_listener
def _let_csv_catch_up(environment: Environment, **_: Any) -> None:
    # Locust rewrites the stats CSV once a second and not at exit, so without this pause the CSV
    # misses the last second (and everything after the run-time limit) that the printed table has
    # (locustio/locust#2299). Users are stopped here, so the next write holds the final numbers.
    options = environment.parsed_options
    if options is not None and getattr(options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


def _pool_or_fail() -> Pool:
    if _pool is None:
        raise RuntimeError("request pool not built: the locust init event did not run")
    return _pool


class _CascadeUser(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        self.pool = _pool_or_fail()
        # Per-user randomness: which pooled body to send, and the simulated responses to it.
        self.rng = np.random.default_rng()

    def rank(self) -> Served | None:
        """POST one pooled body; what was served, or None (and a recorded failure) if the answer is wrong."""
        chosen = self.pool.bodies[int(self.rng.integers(len(self.pool.bodies)))]
        with self.client.post(
            RANK, data=chosen.encoded, headers=JSON_HEADERS, name=RANK, catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
                return None
            try:
                answer = orjson.loads(response.content or b"")
                served = [item["id"] for item in answer["items"]]
                request_id = answer["request_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                response.failure(f"malformed rank response: {exc!r}")
                return None
            if len(served) != chosen.body["k"]:
                response.failure(f"expected {chosen.body['k']} items, got {len(served)}")
                return None
            return Served(chosen, str(request_id), served)


class RankUser(_CascadeUser):
    """Ranks 1,000 candidates back to back: a closed loop that measures the service's capacity."""

    weight = 3
    wait_time = constant(0)

    @task
    def rank_once(self) -> None:
        self.rank()


class FeedbackUser(_CascadeUser):
    """A viewer: gets a feed, reports the simulated response to each served item, then watches a while."""

    weight = 1
    # Watching the feed between requests keeps this user's share of traffic realistic (mostly rank).
    wait_time = between(0.5, 1.5)

    @task
    def rank_then_feedback(self) -> None:
        served = self.rank()
        if served is None:
            return
        rewards = served_responses(self.pool.sim, served.sent.body, served.item_ids, self.rng)
        # One event per served item, as a client reports each item when its response is known.
        for item_id, reward in zip(served.item_ids, rewards, strict=True):
            payload = {"request_id": served.request_id, "item_id": item_id, "rewards": reward}
            with self.client.post(
                FEEDBACK,
                data=orjson.dumps(payload),
                headers=JSON_HEADERS,
                name=FEEDBACK,
                catch_response=True,
            ) as response:
                if response.status_code != 202:
                    response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
