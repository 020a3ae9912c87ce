"""Simulated users against a running `cascade serve` over HTTP on 127.0.0.1 (the loop's traffic).

Each user asks for a feed (`POST /v1/rank`), reacts to what was served (the simulator samples the
responses) and reports each item's response as a feedback event (`POST /v1/feedback`). The true
return of a phase is the simulator's expected request reward of what was served, which neither the
service nor the trainer ever sees.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import orjson

from models.sim.requests import expected_request_reward, rank_request, served_responses
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class PhaseResult:
    requests: int
    true_return: float  # mean expected request reward of what was served
    true_return_stderr: float
    explored: int
    feedback_events: int
    feedback_retries: int  # 404 + Retry-After answers (a decision not logged yet) that were retried
    versions: dict[str, int]  # served version → requests
    seconds: float


def run_phase(
    base: str,
    sim: Simulator,
    *,
    requests: int,
    n_candidates: int,
    k: int,
    traffic_seed: int,
    feedback_seed: int,
    clients: int = 3,
) -> PhaseResult:
    """`requests` simulated users, `clients` at a time. The same traffic_seed draws the same users,
    contexts and candidate pools (common random numbers across phases); feedback_seed the responses."""
    started = time.perf_counter()
    traffic = np.random.default_rng([traffic_seed, 7])
    bodies = [rank_request(sim, traffic, n_candidates=n_candidates, k=k) for _ in range(requests)]

    def one(index: int, http: httpx.Client) -> tuple[float, bool, str, int, int]:
        body = bodies[index]
        ranked = http.post("/v1/rank", content=orjson.dumps(body))
        ranked.raise_for_status()
        served = ranked.json()
        items = [item["id"] for item in served["items"]]
        rng = np.random.default_rng([feedback_seed, index])
        events = retries = 0
        for item_id, rewards in zip(items, served_responses(sim, body, items, rng), strict=True):
            payload = {"request_id": served["request_id"], "item_id": item_id, "rewards": rewards}
            for _ in range(5):
                answer = http.post("/v1/feedback", content=orjson.dumps(payload))
                if answer.status_code != 404:
                    break
                retries += 1  # logged asynchronously and not yet in Redis: retry as told
                time.sleep(float(answer.headers.get("retry-after", "1")))
            answer.raise_for_status()
            events += 1
        return expected_request_reward(sim, body, items), bool(served["explored"]), served["version"], events, retries

    def worker(indices: range) -> list[tuple[float, bool, str, int, int]]:
        with httpx.Client(base_url=base, headers={"content-type": "application/json"}, timeout=30) as http:
            return [one(i, http) for i in indices]

    with ThreadPoolExecutor(clients) as pool:
        chunks = [range(c, requests, clients) for c in range(clients)]
        results = [row for part in pool.map(worker, chunks) for row in part]
    rewards = np.array([r[0] for r in results])
    versions: dict[str, int] = {}
    for row in results:
        versions[row[2]] = versions.get(row[2], 0) + 1
    return PhaseResult(
        requests=requests,
        true_return=float(rewards.mean()),
        true_return_stderr=float(rewards.std(ddof=1) / np.sqrt(len(rewards))),
        explored=sum(r[1] for r in results),
        feedback_events=sum(r[3] for r in results),
        feedback_retries=sum(r[4] for r in results),
        versions=versions,
        seconds=time.perf_counter() - started,
    )
