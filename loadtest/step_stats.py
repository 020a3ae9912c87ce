"""Percentiles of one step of a ramp, from Locust's response-time histograms before and after it.

Locust keeps, per request name, a histogram of response times (`StatsEntry.response_times`: rounded
milliseconds → count), also on the master of a distributed run. The difference of two snapshots is
the histogram of what happened between them, so a step's p99 needs no per-request bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    """A request name's histogram and count at one moment."""

    at: float  # seconds (time.monotonic)
    response_times: dict[int, int]
    requests: int
    failures: int


@dataclass(frozen=True)
class StepResult:
    """What one step of the ramp measured."""

    step: int
    users: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(histogram: Mapping[int, int], q: float) -> float:
    """The q-quantile (0 < q ≤ 1) of a {value: count} histogram; nan when it is empty."""
    total = sum(histogram.values())
    if total == 0:
        return float("nan")
    threshold = q * total
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= threshold:
            return float(value)
    return float(max(histogram))


def between(step: int, users: int, before: Snapshot, after: Snapshot) -> StepResult:
    """The step that ran from `before` to `after`."""
    histogram = {
        value: count - before.response_times.get(value, 0)
        for value, count in after.response_times.items()
        if count - before.response_times.get(value, 0) > 0
    }
    seconds = max(after.at - before.at, 1e-9)
    requests = after.requests - before.requests
    return StepResult(
        step=step,
        users=users,
        seconds=round(seconds, 2),
        requests=requests,
        failures=after.failures - before.failures,
        rps=requests / seconds,
        p50_ms=percentile(histogram, 0.50),
        p95_ms=percentile(histogram, 0.95),
        p99_ms=percentile(histogram, 0.99),
    )


def summary_line(verdict: dict[str, Any]) -> str:
    """One human line: where p99 crossed the bound, or how far the ramp went without crossing."""
    bound = verdict["p99_bound_ms"]
    crossed, under = verdict["crossed_at"], verdict["last_under"]
    below = f"; last step under it: {under['rps']:.1f} rank/s ({under['users']} users)" if under else ""
    if crossed:
        return (
            f"rank p99 crossed {bound:.0f} ms at {crossed['rps']:.1f} rank/s "
            f"({crossed['users']} users, p99 {crossed['p99_ms']:.0f} ms){below}"
        )
    return f"rank p99 stayed under {bound:.0f} ms for every step{below}"
