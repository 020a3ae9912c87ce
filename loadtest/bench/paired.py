"""The cost of decision logging, measured as paired rounds against two live servers.

Two separately started servers differ by about ±10 % in throughput from run to run (which cores, which
allocations), more than logging costs, so one server with logging on against one restarted with it off
cannot resolve it. Here both servers (1 worker each, logging on / off) are started once and stay up; the
load alternates between them in short rounds, in ABBA order so a drift of the machine's load over the run
falls equally on both. Each pair of rounds gives one ratio; the median ratio and its range are reported.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from loadtest.bench.loadgen import Body, drive
from loadtest.bench.servers import cascade_serve

PAUSE_S = 0.3  # between rounds: the logging server's writer drains its last burst on its own time


@dataclass(frozen=True)
class LoggingRound:
    on: float  # requests per second, logging on
    off: float  # requests per second, logging off
    errors: int

    @property
    def cost(self) -> float:
        """Share of throughput logging costs in this pair of rounds (negative: on was faster)."""
        return 1 - self.on / self.off


@dataclass(frozen=True)
class LoggingCost:
    rounds: list[LoggingRound]
    n: int
    concurrency: int
    seconds: float  # per round and server

    @property
    def median_cost(self) -> float:
        return statistics.median(r.cost for r in self.rounds)

    @property
    def cost_range(self) -> tuple[float, float]:
        costs = [r.cost for r in self.rounds]
        return min(costs), max(costs)


def measure_logging_cost(
    store: Path, logs: Path, bodies: list[Body], n: int, concurrency: int, rounds: int, seconds: float
) -> LoggingCost:
    """`rounds` pairs of rounds, ABBA-ordered, against a logging and a non-logging server both kept up."""
    measured: list[LoggingRound] = []
    with ExitStack() as servers:
        on = servers.enter_context(cascade_serve(store, workers=1, log_decisions=True, logs=logs))
        off = servers.enter_context(cascade_serve(store, workers=1, log_decisions=False, logs=logs))
        for i in range(rounds):
            order = (on, off) if i % 2 == 0 else (off, on)
            throughput: dict[int, float] = {}
            errors = 0
            for port in order:
                result = drive(port, "/v1/rank", bodies, concurrency, seconds)
                throughput[port], errors = result.throughput, errors + result.errors
                time.sleep(PAUSE_S)
            measured.append(LoggingRound(on=throughput[on], off=throughput[off], errors=errors))
            print(
                f"logging round {i + 1}/{rounds}: on {throughput[on]:.1f}/s, off {throughput[off]:.1f}/s, "
                f"cost {measured[-1].cost * 100:+.1f} %",
                flush=True,
            )
    return LoggingCost(measured, n, concurrency, seconds)
