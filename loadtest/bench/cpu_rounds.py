"""One measured round of load on one or more servers at once, with each server's own CPU time per request.

Requests/s of a pinned server moves with whatever else takes its core; the CPU time the server itself
spent per answered request (user + system, from /proc) hardly does. Loading two servers pinned to the same
core at the same time (`measured_together` with both) puts them under the same conditions second for
second, so the ratio of their CPU per request compares them even on a busy machine; with one server at a
time it is the classic alternating round. loadtest/bench/ab.py (two variants of the code) and
loadtest/bench/pinned.py (logging on vs off) both measure with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

R = TypeVar("R")
DRAIN_S = 0.3  # after a round: a logging server's writer drains its last burst, counted in its CPU

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (Linux /proc), in seconds."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1]: the parent pid
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class Measured(Generic[R]):
    result: R  # what the load generator reported
    cpu_ms: float  # the server's CPU time per answered request, in ms


def all_at_once(names: list[str], run: Callable[[str], R]) -> dict[str, R]:
    """`run(name)` for every name at the same time (one thread each); by name."""
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(run, name) for name in names}
        return {name: future.result() for name, future in futures.items()}


def measured_together(
    pids: Mapping[str, int],
    run: Callable[[str], R],
    requests: Callable[[R], float],
    warm_up: Callable[[str], object] | None = None,
) -> dict[str, Measured[R]]:
    """Load every server of `pids` (name → server pid) at once with `run(name)`, after an unmeasured
    `warm_up(name)` of all of them at once; `requests(result)` is how many requests a result answered."""
    names = list(pids)
    if warm_up is not None:
        all_at_once(names, warm_up)
    before = {name: cpu_seconds(pids[name]) for name in names}
    results = all_at_once(names, run)
    time.sleep(DRAIN_S)
    return {
        name: Measured(result, (cpu_seconds(pids[name]) - before[name]) * 1000 / max(requests(result), 1.0))
        for name, result in results.items()
    }
