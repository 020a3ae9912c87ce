"""Locust users a team keeps: rankers, viewers that send feedback, and an operator that swaps versions.

    python -m loadtest.run --store store            # starts the server, runs this, summarises
    locust -f loadtest/locustfile.py --headless -u 8 -r 4 -t 30s    # no --host: serves LOADTEST_STORE itself
    locust -f loadtest/locustfile.py --headless -u 8 -r 4 -t 30s --host http://127.0.0.1:8000
    locust -f loadtest/locustfile.py,loadtest/ramp.py --headless --host ...   # + the p99 step ramp

Settings (environment): LOADTEST_MIX (loadtest/mix.py: encodings and candidate counts with weights),
LOADTEST_K (items served, 10), LOADTEST_STORE (the store whose demo policy's world the requests come from,
`store`; loadtest/store_world.py), LOADTEST_SIM_SEED (the v1 world used when that store has no demo
policy, e.g. against a server elsewhere, 0 = `cascade demo`'s; also seeds the bodies), LOADTEST_ADMIN_TOKEN
(enables the operator), LOADTEST_OPERATOR_PAUSE_S (between its steps, 5).

Requests and viewers' rewards come from the project's simulator (models/sim, numpy only): the world the
served demo policy was trained in (v1 or v2.1, as its manifest says), so widths and item ids match and
feedback is realistic. Only models.sim is imported here, never torch, so a
Locust worker stays light (tests/loadtest/test_locust_imports.py holds this).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import orjson
from locust import FastHttpUser, between, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC, StatsEntry

from loadtest.mix import DEFAULT_MIX, MixEntry, RankBody, build_pool, parse_mix
from loadtest.operator_cycle import OPERATOR, Operator
from loadtest.own_server import OwnServer, from_environment
from loadtest.phases import PHASES, report_phases
from loadtest.store_world import store_world
from models.sim.requests import served_responses
from models.sim.simulator import Simulator

FEEDBACK = "/v1/feedback"
K = int(os.environ.get("LOADTEST_K", "10"))
PER_ENTRY = 20  # pooled bodies per kind of request and worker process
SIM_SEED = int(os.environ.get("LOADTEST_SIM_SEED", "0"))
STORE = Path(os.environ.get("LOADTEST_STORE", "store"))
MIX = parse_mix(os.environ.get("LOADTEST_MIX", DEFAULT_MIX))
ADMIN_TOKEN = os.environ.get("LOADTEST_ADMIN_TOKEN")
OPERATOR_PAUSE_S = float(os.environ.get("LOADTEST_OPERATOR_PAUSE_S", "5"))

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Served:
    """What the service answered to one rank request."""

    sent: RankBody
    request_id: str
    item_ids: list[str]


@dataclass(frozen=True)
class Pool:
    sim: Simulator
    bodies: dict[MixEntry, list[RankBody]]
    entries: list[MixEntry]
    weights: np.ndarray


_pool: Pool | None = None


@events.init.add_listener
def _build_pool(environment: Environment, **_: Any) -> None:
    # Built in `init`, before any user spawns, so generating it never counts as test time.
    global _pool
    if isinstance(environment.runner, MasterRunner):
        return  # a master sends no requests
    sim = _world()
    rng = np.random.default_rng([SIM_SEED, os.getpid()])  # distinct bodies per worker process
    weights = np.array([entry.weight for entry in MIX])
    _pool = Pool(sim, build_pool(sim, MIX, rng, PER_ENTRY, K), MIX, weights / weights.sum())


def _world() -> Simulator:
    if (STORE / "demo").is_dir():
        world = store_world(STORE)
        print(f"requests from the world of {STORE}'s demo policy: {type(world).__name__}", flush=True)
        return world
    print(f"{STORE} has no demo policy: requests from simulator v1, world {SIM_SEED}", flush=True)
    return Simulator(seed=SIM_SEED)


_own_server: OwnServer | None = None


@events.init.add_listener
def _serve_if_no_host(environment: Environment, **_: Any) -> None:
    # Without --host the run brings its own server on 127.0.0.1 (loadtest/own_server.py), so the plain
    # `locust -f loadtest/locustfile.py --headless` line is a whole, bounded test like `make loadtest`.
    global _own_server
    if isinstance(environment.runner, WorkerRunner) or environment.host:
        return
    _own_server = from_environment()
    environment.host = _own_server.url
    print(f"no --host given: serving {_own_server.url} for this run (server log: {_own_server.log})", flush=True)


@events.init.add_listener
def _refresh_loop_clock(environment: Environment, **_: Any) -> None:
    # Registered last: building the pool and starting a server blocked the event loop for seconds, and
    # gevent's cached clock would have Locust's --run-time timer, started next, fire that much early
    # (on a busy machine at once: a 6 s run measured 50 ms).
    gevent.get_hub().loop.update_now()


@events.quitting.add_listener
def _stop_own_server(environment: Environment, **_: Any) -> None:
    if _own_server is not None:
        _own_server.stop()


@events.test_stop.add_listener
def _let_csv_catch_up(environment: Environment, **_: Any) -> None:
    # Locust rewrites the stats CSV once a second and not at exit, so without this pause the CSV
    # misses the last second (and everything after the run-time limit) that the printed table has
    # (locustio/locust#2299). Users are stopped here, so the next write holds the final numbers.
    options = environment.parsed_options
    if options is not None and getattr(options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


@events.quitting.add_listener
def _write_rank_summary(environment: Environment, **_: Any) -> None:
    # Each kind of rank request has its own stats row; the percentiles of all of them together need
    # their histograms merged, which only Locust holds (the CSV has percentiles, not histograms).
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    if environment.runner is None or not prefix:
        return
    stats = environment.runner.stats
    merged = StatsEntry(stats, "/v1/rank (all kinds)", "POST", use_response_times_cache=False)
    for (name, _method), entry in stats.entries.items():
        if name.startswith("/v1/rank"):
            merged.extend(entry)
    # Over the whole run (the test's start, as Locust's own total row counts it), not from each kind's
    # first request: a kind seen once would otherwise claim a rate over a window of zero seconds.
    start = stats.total.start_time
    last = merged.last_request_timestamp or start
    seconds = max(last - start, 1e-9) if merged.num_requests else 0.0
    summary = {
        "requests": merged.num_requests,
        "failures": merged.num_failures,
        "seconds": round(seconds, 2),
        "rps": merged.num_requests / seconds if seconds else 0.0,
        **{f"p{q}_ms": merged.get_response_time_percentile(q / 100) for q in (50, 95, 99)},
    }
    Path(f"{prefix}_rank.json").write_text(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")


def _pool_or_fail() -> Pool:
    if _pool is None:
        raise RuntimeError("request pool not built: the locust init event did not run")
    return _pool


class _CascadeUser(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        self.pool = _pool_or_fail()
        # Per-user randomness: which kind of request, which pooled body, the simulated responses.
        self.rng = np.random.default_rng()

    def rank(self) -> Served | None:
        """POST one pooled body of the mix; what was served, or None (a recorded failure) if wrong."""
        pool = self.pool
        entry = pool.entries[int(self.rng.choice(len(pool.entries), p=pool.weights))]
        bodies = pool.bodies[entry]
        chosen = bodies[int(self.rng.integers(len(bodies)))]
        headers = {"content-type": chosen.content_type}
        with self.client.post(
            "/v1/rank",
            data=chosen.encoded,  # type: ignore[arg-type]  # bytes are sent as they are; the hint says str
            headers=headers,
            name=entry.name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
                return None
            try:
                answer = orjson.loads(response.content or b"")
                served = [item["id"] for item in answer["items"]]
                request_id = answer["request_id"]
                timings = answer["timings"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                response.failure(f"malformed rank response: {exc!r}")
                return None
            if len(served) != min(chosen.body["k"], entry.candidates):
                response.failure(f"expected {chosen.body['k']} items, got {len(served)}")
                return None
        report_phases(self.environment, timings)
        return Served(chosen, str(request_id), served)


class RankUser(_CascadeUser):
    """Ranks back to back: a closed loop that measures the service's capacity."""

    weight = 3
    wait_time = constant(0)

    @task
    def rank_once(self) -> None:
        self.rank()


class ViewerUser(_CascadeUser):
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
                data=orjson.dumps(payload),  # type: ignore[arg-type]  # bytes, as above
                headers=JSON_HEADERS,
                name=FEEDBACK,
                catch_response=True,
            ) as response:
                if response.status_code != 202:
                    response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")


class OperatorUser(FastHttpUser):
    """One operator per run: canaries the next version, promotes it, rolls back, over and over.

    Swapping under load is a scenario here, not only a test: every rank request in flight during a
    swap is counted, and a failed one shows in the stats. Needs LOADTEST_ADMIN_TOKEN and two or more
    versions of the policy in the store (`python -m loadtest.run` prepares them).
    """

    abstract = ADMIN_TOKEN is None  # no token, no operator
    fixed_count = 1
    wait_time = constant(OPERATOR_PAUSE_S)

    def on_start(self) -> None:
        self.operator = Operator(policy=os.environ.get("LOADTEST_POLICY", "demo"))

    @task
    def next_step(self) -> None:
        step = self.operator.next_step(self._models())
        if step is None:
            return
        path, body = step
        with self.client.post(
            path,
            data=orjson.dumps(body),  # type: ignore[arg-type]  # bytes, as above
            headers={**JSON_HEADERS, "authorization": f"Bearer {ADMIN_TOKEN}"},
            name=f"{OPERATOR} {path.rsplit('/', 1)[-1]}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")

    def _models(self) -> dict[str, Any]:
        with self.client.get("/v1/models", name=f"{OPERATOR} models", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
                return {}
            models: dict[str, Any] = orjson.loads(response.content or b"{}")
            return models


__all__ = ["PHASES", "OperatorUser", "RankUser", "ViewerUser"]
