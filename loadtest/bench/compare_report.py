"""The server comparison → its section of BENCHMARKS.md (tables, targets met or missed) and its plot.

Every figure is a ratio to cascade-serve (logging on) measured in the same rounds: for each round, the
peer's requests/s over cascade-serve's in that round, then the median and the range over the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from loadtest.bench.compare import UNPINNED, Cell, Comparison
from loadtest.bench.peer_servers import (
    BY_ID,
    CASCADE_OFF,
    CASCADE_ON,
    FASTAPI,
    INLINE,
    LITSERVE,
    NAIVE,
    SERVERS,
    TENSORS,
)
from loadtest.bench.sections import write_section

SECTION = "server-comparison"
QUIET_LOAD = 1.5  # a 1-min load average above this means other work shared the cores
Key = tuple[str, str]  # (server, encoding)


def _cell(cells: list[Cell], group: str, key: Key, n: int, r: int) -> Cell | None:
    return next((c for c in cells if (c.group, c.server, c.encoding, c.n, c.round) == (group, *key, n, r)), None)


def ratios(cells: list[Cell], group: str | None, num: Key, den: Key, n: int) -> list[float]:
    """num / den requests/s, one per round in which both ran (in `group`, or in every group)."""
    out = []
    for c in cells:
        if (c.server, c.encoding, c.n) == (*num, n) and (group is None or c.group == group):
            other = _cell(cells, c.group, den, n, c.round)
            if other is not None and other.run.throughput > 0:
                out.append(c.run.throughput / other.run.throughput)
    return out


def runs(cells: list[Cell], group: str | None, key: Key, n: int) -> list[Cell]:
    return [c for c in cells if (c.server, c.encoding, c.n) == (*key, n) and (group is None or c.group == group)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def _pinned_groups(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.group != UNPINNED]


def _targets(result: Comparison, sizes: list[int], ref: int) -> list[tuple[str, str, str, bool | None]]:
    cells = result.cells
    pinned = _pinned_groups(cells)
    ours = (CASCADE_ON, BY_ID)
    out: list[tuple[str, str, str, bool | None]] = []

    def add(name: str, values: list[float], how: str, goal: float, at_least: bool = True) -> None:
        if not values:
            out.append((name, "n/a", how + " (not measured)", None))
            return
        m = median(values)
        out.append((name, spread(values), how, m >= goal if at_least else m <= goal))

    for n in sizes:
        add(
            f"by id, pinned, N={n}: ≥ 1 × the hand-tuned route",
            ratios(cells, FASTAPI, ours, (FASTAPI, BY_ID), n),
            "cascade-serve ÷ route, per round",
            1.0,
        )
        a, b = runs(cells, FASTAPI, ours, n), runs(cells, FASTAPI, (FASTAPI, BY_ID), n)
        if a and b:
            p99 = median([c.run.p99_ms for c in a]) / median([c.run.p99_ms for c in b])
            out.append(
                (
                    f"by id, pinned, N={n}: p99 ≤ the route's",
                    f"{p99:.2f}",
                    f"{median([c.run.p99_ms for c in a]):.1f} ms ÷ {median([c.run.p99_ms for c in b]):.1f} ms",
                    p99 <= 1.0,
                )
            )
        add(
            f"by id, unpinned, N={n}: ≥ 1 × the hand-tuned route",
            ratios(cells, UNPINNED, ours, (FASTAPI, BY_ID), n),
            "cascade-serve ÷ route, per round, unpinned",
            1.0,
        )
    add(
        f"N={ref}: ≥ 2.5 × LitServe (by id)",
        ratios(cells, LITSERVE, ours, (LITSERVE, BY_ID), ref),
        "cascade-serve ÷ LitServe, per round",
        2.5,
    )
    add(
        f"N={ref}: ≥ 10 × the naive server (by id vs its inline)",
        ratios(cells, NAIVE, ours, (NAIVE, INLINE), ref),
        "cascade-serve by id ÷ naive inline, per round",
        10.0,
    )
    for n, goal in ((ref, 0.8), (min(sizes), 0.5)):
        limit = result.limit_p50_ms.get(n)
        throughput = [c.run.throughput for c in runs(pinned, None, ours, n)]
        if limit:
            add(
                f"N={n}: ≥ {goal} × the compute limit",
                [t * limit / 1000 for t in throughput],
                f"cascade-serve by id ÷ {1000 / limit:.0f}/s (1 / in-process p50), pinned rounds",
                goal,
            )
    add(
        f"N={ref}: inline JSON ≥ 0.3 × by id",
        ratios(pinned, None, (CASCADE_ON, INLINE), ours, ref),
        "cascade-serve inline ÷ by id, per round",
        0.3,
    )
    for n in sizes:
        add(
            f"N={n}: msgpack tensors ≥ 0.9 × by id",
            ratios(pinned, None, (CASCADE_ON, TENSORS), ours, n),
            "cascade-serve msgpack ÷ by id, per round",
            0.9,
        )
    for n in sizes:
        tails = [c.run.p99_ms / c.run.p50_ms for c in runs(pinned, None, ours, n) if c.run.p50_ms > 0]
        add(f"N={n}: p99 ≤ 2.5 × p50 (by id, pinned)", tails, "p99 ÷ p50 of each round", 2.5, at_least=False)
    return out


def _versions() -> str:
    names = ("onnxruntime", "fastapi", "uvicorn", "granian", "litserve", "ray", "torch", "numpy")
    found = []
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def _cpu() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return "unknown CPU"


def _throughput_table(result: Comparison, sizes: list[int]) -> list[str]:
    cells = result.cells
    lines = [
        "| server | encoding | " + " | ".join(f"N={n:,}: req/s, × cascade-serve" for n in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    limit = " | ".join(
        f"{1000 / result.limit_p50_ms[n]:,.0f}, {spread(_limit_ratio(result, n))}" if n in result.limit_p50_ms else ""
        for n in sizes
    )
    lines.append(f"| compute limit: id lookup + gather + one onnxruntime call in-process (1 / p50) | by id | {limit} |")
    for spec in SERVERS:
        for encoding in spec.encodings:
            row = []
            for n in sizes:
                measured = runs(_pinned_groups(cells), None, (spec.name, encoding), n)
                if not measured:
                    row.append("—")
                    continue
                rps = median([c.run.throughput for c in measured])
                if spec.name == CASCADE_ON:
                    row.append(f"{rps:,.0f}, 1")
                else:
                    versus = ratios(cells, spec.name, (spec.name, encoding), (CASCADE_ON, encoding), n)
                    row.append(f"{rps:,.0f}, {spread(versus)}")
            lines.append(f"| {spec.name} | {encoding} | " + " | ".join(row) + " |")
    for server in (CASCADE_ON, FASTAPI):
        row = []
        for n in sizes:
            measured = runs(cells, UNPINNED, (server, BY_ID), n)
            rps = median([c.run.throughput for c in measured]) if measured else float("nan")
            ratio = (
                "1"
                if server == CASCADE_ON
                else spread(ratios(cells, UNPINNED, (server, BY_ID), (CASCADE_ON, BY_ID), n))
            )
            row.append(f"{rps:,.0f}, {ratio}" if measured else "—")
        lines.append(f"| {server}, unpinned | json-by-id | " + " | ".join(row) + " |")
    return lines


def _limit_ratio(result: Comparison, n: int) -> list[float]:
    """The limit's 1/p50 over cascade-serve's by-id requests/s of each pinned round."""
    limit = 1000 / result.limit_p50_ms[n]
    return [
        limit / c.run.throughput
        for c in runs(_pinned_groups(result.cells), None, (CASCADE_ON, BY_ID), n)
        if c.run.throughput > 0
    ]


def _latency_table(result: Comparison, sizes: list[int]) -> list[str]:
    lines = [
        "| server | encoding | " + " | ".join(f"N={n:,}: p50 / p99 ms" for n in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for spec in SERVERS:
        for encoding in spec.encodings:
            row = []
            for n in sizes:
                found = runs(_pinned_groups(result.cells), None, (spec.name, encoding), n)
                measured = [c for c in found if c.run.requests > 0]  # a round nothing finished in has no latency
                p50 = median([c.run.p50_ms for c in measured])
                p99 = median([c.run.p99_ms for c in measured])
                row.append(f"{p50:.1f} / {p99:.1f}" if measured else "no request finished" if found else "—")
            lines.append(f"| {spec.name} | {encoding} | " + " | ".join(row) + " |")
    return lines


def _profile_table(result: Comparison) -> list[str]:
    """Where cascade-serve's worker spends the GIL, by phase (loadtest/bench/profile.py), for each profiled N."""
    if not result.profiles:
        return []
    phases = list(dict.fromkeys(phase for p in result.profiles for phase, _ in p.phases))
    lines = [
        "",
        "### Where the time goes (cascade-serve, logging on, by id, pinned)",
        "",
        "`py-spy record --gil` on the worker under the same load: each phase's share of the samples that held",
        "the GIL (on one core, the Python that serialises requests). Phases by frame (loadtest/bench/profile.py).",
        "",
        "| phase | " + " | ".join(f"N={p.n:,} ({p.throughput:,.0f}/s while sampled)" for p in result.profiles) + " |",
        "|---|" + "---|" * len(result.profiles),
    ]
    for phase in phases:
        shares = [dict(p.phases).get(phase, 0.0) for p in result.profiles]
        lines.append(f"| {phase} | " + " | ".join(f"{s * 100:.1f} %" for s in shares) + " |")
    return lines


def write_comparison(
    result: Comparison, args: argparse.Namespace, command: str, seconds: float, when: str | None = None
) -> None:
    sizes = sorted({c.n for c in result.cells} | set(result.limit_p50_ms))
    ref = 1000 if 1000 in sizes else sizes[len(sizes) // 2]
    when = when or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = ", ".join(f"{k} {v:.2f}" for k, v in result.machine_load.items())
    cost = ", ".join(f"{k} {v:.0f} µs" for k, v in result.loadgen_cost_us.items())
    pin = (
        "every server (all its processes) on core 0 (`taskset -c 0`), the load generator, the harness and a"
        " standalone Redis on core 1, as in a pod with one CPU"
        if result.pinned
        else "nothing pinned: every process shares every core"
    )
    lines = [
        "## cascade-serve against what a user would write or pick instead",
        "",
        f"Written by `{command}` on {when} ({seconds / 60:.1f} min); raw numbers in `{args.results}`;"
        f" servers in loadtest/peers/ and loadtest/bench/peer_servers.py, harness in loadtest/bench/compare.py.",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores ({_cpu()}), Linux {platform.release()};"
        f" Python {platform.python_version()}. Load average (1, 5, 15 min): {load}.",
        f"- Packages: {_versions()}.",
        f"- Pinning: {pin}.",
        f"- Load: `{result.loadgen}` (CPU per request measured against cascade-serve: {cost}; the cheaper drives),"
        f" {args.concurrency} keep-alive connections, {args.seconds} s measured after {args.warmup} s of warm-up;"
        f" {args.rounds} rounds per N, alternating forward and reversed between each server and cascade-serve.",
        f"- Requests: {args.per_size} distinct bodies per N, k = 10; by id (`{BY_ID}`), inline rows (`{INLINE}`),"
        f" msgpack tensors (`{TENSORS}`). Every server starts with exploration seed {args.seed}.",
        "- Ratios: each server's requests/s over cascade-serve's (logging on) in the same round; median [range].",
        *(
            [
                f"- **Measured on a loaded machine** (1-min load {result.machine_load['before']:.1f} at the start, over"
                f" {QUIET_LOAD} with other work on both cores): pinning keeps the servers apart from the load"
                " generator, not from that work. Read the ratios as indications; rerun on a quiet machine.",
            ]
            if result.machine_load.get("before", 0.0) > QUIET_LOAD
            else []
        ),
        "",
        "### Correctness gate",
        "",
        "Before any timing, each server answers the same sequence of requests, one at a time, and must return",
        "cascade-serve's top-k ids, scores and fusion weights (same seed, same order: the same fusion noise).",
        "",
        "| server | passed | requests | explored | first problems |",
        "|---|---|---|---|---|",
        *(
            f"| {g.server} | {'yes' if g.passed else 'NO'} | {g.checked} | {g.explored} | "
            f"{'; '.join(g.problems[:2]) or ''} |"
            for g in result.gates
        ),
        *(f"| {name} | not run | | | {why} |" for name, why in result.skipped.items() if "gate" not in why),
        "",
        "### Throughput (concurrency " + str(args.concurrency) + ")",
        "",
        *_throughput_table(result, sizes),
        "",
        "### Latency (median over rounds)",
        "",
        *_latency_table(result, sizes),
        "",
        f"### Targets (logging on, 1 worker, by id, concurrency {args.concurrency})",
        "",
        "| target | measured | from | met |",
        "|---|---|---|---|",
        *(
            f"| {name} | {value} | {how} | {'yes' if ok else 'no' if ok is False else '?'} |"
            for name, value, how, ok in _targets(result, sizes, ref)
        ),
        *_profile_table(result),
        "",
        f"![requests/s against N, by id, pinned]({args.plot.name})",
    ]
    write_section(args.out, SECTION, "\n".join(lines))
    _plot(result, sizes, args.plot)


def _plot(result: Comparison, sizes: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    limit = [(n, 1000 / result.limit_p50_ms[n]) for n in sizes if n in result.limit_p50_ms]
    if limit:
        axis.plot(*zip(*limit, strict=True), linestyle="--", color="grey", label="compute limit (in-process)")
    for spec in SERVERS:
        encoding = BY_ID if BY_ID in spec.encodings else INLINE
        points = [
            (n, median([c.run.throughput for c in found]))
            for n in sizes
            if (
                found := [
                    c for c in runs(_pinned_groups(result.cells), None, (spec.name, encoding), n) if c.run.requests > 0
                ]
            )  # nothing finished: no point on a log scale
        ]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=f"{spec.name} ({encoding})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("candidates per request (N)")
    axis.set_ylabel(f"requests/s at concurrency 8, {'pinned to one core' if result.pinned else 'unpinned'}")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


__all__ = ["CASCADE_OFF", "write_comparison"]
