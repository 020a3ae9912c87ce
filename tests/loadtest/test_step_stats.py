"""A ramp step's percentiles from two snapshots of Locust's histograms."""

from __future__ import annotations

import math

from loadtest.step_stats import Snapshot, between, percentile


def test_percentile_of_a_histogram() -> None:
    histogram = {10: 90, 20: 9, 500: 1}

    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.95) == 20
    assert percentile(histogram, 0.99) == 20
    assert percentile(histogram, 1.0) == 500
    assert math.isnan(percentile({}, 0.99))


def test_a_step_counts_only_what_happened_between_its_snapshots() -> None:
    # Before the step: 100 fast requests. During it: 98 more at 10 ms and 2 at 300 ms.
    before = Snapshot(at=100.0, response_times={5: 100}, requests=100, failures=0)
    after = Snapshot(at=110.0, response_times={5: 100, 10: 98, 300: 2}, requests=200, failures=1)

    step = between(3, 8, before, after)

    assert step.requests == 100
    assert step.failures == 1
    assert step.rps == 10.0
    assert step.p50_ms == 10
    assert step.p99_ms == 300
