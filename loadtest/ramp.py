"""A step ramp that finds the rate at which the rank p99 crosses a bound (a Locust LoadTestShape).

    locust -f loadtest/locustfile.py,loadtest/ramp.py --headless --host http://127.0.0.1:8000 --csv out/stats
    python -m loadtest.run --store store --ramp

Users grow by LOADTEST_RAMP_STEP_USERS every LOADTEST_RAMP_STEP_S seconds, from LOADTEST_RAMP_START_USERS
up to LOADTEST_RAMP_MAX_USERS. After each step the client-side p99 of every rank request of that step
is compared with LOADTEST_RAMP_P99_MS; the first step above it ends the ramp, and the rate it ran at
is the answer (the step before is the highest rate that met the bound). The steps are written to
`<csv prefix>_ramp.json` and printed.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.env import Environment

from loadtest.step_stats import Snapshot, StepResult, between, summary_line

RANK_PREFIX = "/v1/rank"


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class StepRamp(LoadTestShape):
    """Step the number of users up until the rank p99 of a step exceeds the bound."""

    start_users = int(_setting("LOADTEST_RAMP_START_USERS", 2))
    step_users = int(_setting("LOADTEST_RAMP_STEP_USERS", 2))
    max_users = int(_setting("LOADTEST_RAMP_MAX_USERS", 24))
    step_s = _setting("LOADTEST_RAMP_STEP_S", 15)
    # The first seconds of a step are users starting up; only the rest of the step is measured.
    settle_s = _setting("LOADTEST_RAMP_SETTLE_S", 3)
    p99_bound_ms = _setting("LOADTEST_RAMP_P99_MS", 100)

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[StepResult] = []
        self.crossed: StepResult | None = None
        self._step = -1
        self._before: Snapshot | None = None

    def _snapshot(self) -> Snapshot:
        """Every rank request name's histogram summed (the mix gives each kind its own name)."""
        histogram: dict[int, int] = {}
        requests = failures = 0
        if self.runner is None:
            return Snapshot(time.monotonic(), histogram, requests, failures)
        for (name, _method), entry in self.runner.stats.entries.items():
            if not name.startswith(RANK_PREFIX):
                continue
            for value, count in entry.response_times.items():
                histogram[value] = histogram.get(value, 0) + count
            requests += entry.num_requests
            failures += entry.num_failures
        return Snapshot(time.monotonic(), histogram, requests, failures)

    def users_at(self, step: int) -> int:
        return self.start_users + step * self.step_users

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        step = int(elapsed // self.step_s)
        into_step = elapsed - step * self.step_s
        if step != self._step:
            if self._before is not None:
                self._finish(self._step)
                if self.crossed is not None:
                    return None
            self._step = step
            self._before = None
            if self.users_at(step) > self.max_users:
                return None
        if self._before is None and into_step >= self.settle_s:
            self._before = self._snapshot()
        users = self.users_at(step)
        return users, float(users)  # spawn a step's new users within about a second

    def _finish(self, step: int) -> None:
        assert self._before is not None
        result = between(step, self.users_at(step), self._before, self._snapshot())
        self.steps.append(result)
        print(
            f"ramp step {step}: {result.users} users, {result.rps:.1f} rank/s, "
            f"p50 {result.p50_ms:.0f} ms p95 {result.p95_ms:.0f} ms p99 {result.p99_ms:.0f} ms",
            flush=True,
        )
        if not math.isnan(result.p99_ms) and result.p99_ms > self.p99_bound_ms:
            self.crossed = result

    def verdict(self) -> dict[str, Any]:
        """The steps, the bound, and the rate at which p99 crossed it (None if it never did)."""
        under = [s for s in self.steps if s is not self.crossed]
        return {
            "p99_bound_ms": self.p99_bound_ms,
            "step_s": self.step_s,
            "steps": [asdict(s) for s in self.steps],
            "crossed_at": asdict(self.crossed) if self.crossed else None,
            "last_under": asdict(under[-1]) if under else None,
        }


@events.quitting.add_listener
def _write_verdict(environment: Environment, **_: Any) -> None:
    shape = environment.shape_class
    if not isinstance(shape, StepRamp):
        return
    verdict = shape.verdict()
    print(summary_line(verdict), flush=True)
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    if prefix:
        Path(f"{prefix}_ramp.json").write_text(json.dumps(verdict, indent=2) + "\n")
