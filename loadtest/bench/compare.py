"""`cascade bench --peers`: cascade-serve against what a user would write or pick instead, in one run.

1. the compute limit: id lookup + gather + one onnxruntime call in-process, pinned to the server's core;
2. the load generator's own cost: wrk and the raw-socket generator against the same server; the cheaper drives;
3. a standalone Redis on the load core; cascade-serve (logging on) starts and stays up for the whole run;
4. for each other server (cascade-serve logging off, the hand-tuned FastAPI route, LitServe, Ray Serve with
   defaults and with @serve.batch, the naive baseline): start it pinned, pass the correctness gate
   (loadtest/bench/gate.py) or be skipped untimed, then for each N alternate rounds between it and
   cascade-serve (forward, then reversed: ABBA), so each ratio comes from rounds measured side by side;
5. py-spy --gil on the pinned cascade-serve worker, by id, at the smallest N and N = 1,000 (when installed);
6. unpinned: cascade-serve against the hand-tuned route with both cores shared by everything.
Every figure in the report is a ratio to cascade-serve (logging on) measured in the same rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from loadtest.bench.gate import GateResult, ask, compare, reference_answers
from loadtest.bench.limit import by_id_p50_ms
from loadtest.bench.loadgen import Body
from loadtest.bench.peer_servers import BY_ID, CASCADE_ON, FASTAPI, SERVERS, Context, ServerSpec
from loadtest.bench.pinning import ALL_CORES, LOAD_CORE, SERVER_CORE, can_pin, standalone_redis, this_process_on
from loadtest.bench.profile import Profile, find_py_spy, profile_worker
from loadtest.bench.workload import Workload
from loadtest.bench.wrk import BodyFiles, Run, drive_sockets, drive_wrk, wrk_available

PATH = "/v1/rank"
UNPINNED = "unpinned"


@dataclass(frozen=True)
class Cell:
    """One measured run: which comparison group and round, which server, encoding and N."""

    group: str  # the server compared with cascade-serve in these rounds (or UNPINNED)
    round: int
    server: str
    encoding: str
    n: int
    run: Run


@dataclass
class Comparison:
    pinned: bool
    loadgen: str
    loadgen_cost_us: dict[str, float]  # CPU µs per request of each generator
    limit_p50_ms: dict[int, float]
    gates: list[GateResult] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # server → why it was not measured
    names: list[str] = field(default_factory=list)
    machine_load: dict[str, float] = field(default_factory=dict)  # os.getloadavg() at the start and the end
    profiles: list[Profile] = field(default_factory=list)  # py-spy --gil of cascade-serve, by id

    def as_json(self) -> dict[str, object]:
        return {
            "pinned": self.pinned,
            "loadgen": self.loadgen,
            "loadgen_cost_us": self.loadgen_cost_us,
            "limit_p50_ms": self.limit_p50_ms,
            "gates": [asdict(g) for g in self.gates],
            "cells": [{**asdict(c), "run": asdict(c.run)} for c in self.cells],
            "skipped": self.skipped,
            "machine_load": self.machine_load,
            "profiles": [asdict(p) for p in self.profiles],
        }


def comparison_from_json(raw: dict[str, Any]) -> Comparison:
    """A Comparison back from its results file (to re-render the report without re-measuring)."""
    return Comparison(
        pinned=raw["pinned"],
        loadgen=raw["loadgen"],
        loadgen_cost_us=raw["loadgen_cost_us"],
        limit_p50_ms={int(n): v for n, v in raw["limit_p50_ms"].items()},
        gates=[GateResult(**g) for g in raw["gates"]],
        cells=[Cell(**{**c, "run": Run(**c["run"])}) for c in raw["cells"]],
        skipped=raw["skipped"],
        machine_load=raw.get("machine_load", {}),
        profiles=[
            Profile(
                p["n"], [tuple(x) for x in p["phases"]], [tuple(x) for x in p["leaves"]], p["samples"], p["throughput"]
            )
            for p in raw.get("profiles", [])
        ],
    )


def peers_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("litserve", "ray"))


class Driver:
    """One way of putting load on a port, the same for every cell of the run."""

    def __init__(self, kind: str, concurrency: int, seconds: int, warmup: int, core: int | None) -> None:
        self.kind, self.concurrency, self.seconds, self.warmup, self.core = kind, concurrency, seconds, warmup, core
        self.files = BodyFiles()

    def __call__(self, port: int, bodies: list[Body], seconds: int | None = None) -> Run:
        s = seconds or self.seconds
        if self.kind == "wrk":
            return drive_wrk(port, PATH, bodies, self.files, self.concurrency, s, self.warmup, self.core)
        return drive_sockets(port, PATH, bodies, self.concurrency, s, self.warmup)


def calibrate(port: int, bodies: list[Body], concurrency: int, core: int | None) -> dict[str, float]:
    """CPU µs per request each generator spends, against the same server and requests (3 s each)."""
    cost = {}
    for kind in ("wrk", "sockets") if wrk_available() else ("sockets",):
        driver = Driver(kind, concurrency, 3, 1, core)
        try:
            cost[kind] = driver(port, bodies).load_cpu_us_per_request
        finally:
            driver.files.close()
    return cost


def _rounds(
    result: Comparison,
    drive: Driver,
    workload: Workload,
    group: str,
    cells: list[tuple[str, int, str]],
    sizes: list[int],
    rounds: int,
) -> None:
    """`rounds` rounds per N over (server, port, encoding) cells, forward then reversed."""
    for n in sizes:
        for r in range(rounds):
            for server, port, encoding in cells if r % 2 == 0 else list(reversed(cells)):
                run = drive(port, workload.bodies[encoding, n])
                result.cells.append(Cell(group, r, server, encoding, n, run))
                print(
                    f"[{group}] round {r + 1}/{rounds} N={n:<5d} {server:30s} {encoding:15s} "
                    f"{run.throughput:8.1f}/s p50 {run.p50_ms:7.2f} ms p99 {run.p99_ms:7.2f} ms errors {run.errors}",
                    flush=True,
                )


@contextlib.contextmanager
def _started(spec: ServerSpec, ctx: Context) -> Iterator[int]:
    print(f"starting {spec.name} ...", flush=True)
    with spec.start(ctx) as port:
        yield port


def run_comparison(args: argparse.Namespace, store: Path, checkpoint: Path, workload: Workload, logs: Path,
                   names: list[str]) -> Comparison:  # fmt: skip
    """The whole comparison (see the module docstring)."""
    sizes = [int(n) for n in args.sizes.split(",")]
    load_before = os.getloadavg()
    pinned = can_pin() and not args.no_pin
    server_core, load_core = (SERVER_CORE, LOAD_CORE) if pinned else (None, None)
    limit: dict[int, float] = {}
    with this_process_on(server_core):
        for n in sizes:
            by_id = [msgspec.json.decode(b.data) for b in workload.bodies[BY_ID, n]]
            limit[n] = by_id_p50_ms(store, "demo", by_id, repeats=max(100, 40_000 // n))
            print(f"limit N={n}: p50 {limit[n]:.3f} ms ({1000 / limit[n]:.0f}/s)", flush=True)
    with this_process_on(load_core), standalone_redis(load_core) as redis_url:
        ctx = Context(store, checkpoint, logs, redis_url, args.seed, server_core)
        reference_spec = SERVERS[0]
        with _started(reference_spec, ctx) as reference_port:
            sequence, reference = reference_answers(
                reference_port, store, workload, sizes, args.gate_per_cell, reference_spec.encodings, names,
                args.per_size,
            )  # fmt: skip
            own = compare(CASCADE_ON, sequence, reference, reference)
            cost = calibrate(reference_port, workload.bodies[BY_ID, sizes[0]], args.concurrency, load_core)
            kind = args.loadgen if args.loadgen != "auto" else min(cost, key=cost.__getitem__)
            print(f"load generator CPU per request: {cost} → {kind}", flush=True)
            result = Comparison(pinned, kind, cost, limit, [own], names=names)
            drive = Driver(kind, args.concurrency, args.seconds, args.warmup, load_core)
            try:
                for spec in SERVERS[1:]:
                    if spec.needs_peers and not peers_installed():
                        result.skipped[spec.name] = "the peers extra is not installed (`make peers`)"
                        continue
                    if spec.name in args.skip:
                        result.skipped[spec.name] = "skipped on the command line"
                        continue
                    with _started(spec, ctx) as port:
                        gate = compare(spec.name, sequence, reference, ask(port, store, workload, sequence,
                                                                          spec.encodings, names))  # fmt: skip
                        result.gates.append(gate)
                        print(f"gate {spec.name}: {'passed' if gate.passed else 'FAILED'} {gate.problems[:3]}")
                        if not gate.passed:
                            result.skipped[spec.name] = "failed the correctness gate: " + "; ".join(gate.problems[:3])
                            continue
                        ours = sorted({*spec.encodings, BY_ID})
                        cells = [(CASCADE_ON, reference_port, e) for e in ours]
                        cells += [(spec.name, port, e) for e in spec.encodings]
                        _rounds(result, drive, workload, spec.name, cells, sizes, args.rounds)
                if find_py_spy() is not None and args.profile_seconds > 0:
                    # Where the time goes, for the targets it misses: the reference worker, still pinned and up.
                    for n in sorted({min(sizes), 1000 if 1000 in sizes else max(sizes)}):
                        raw = logs / f"profile-{n}.raw"
                        bodies = workload.bodies[BY_ID, n]
                        found = profile_worker(reference_port, bodies, n, args.profile_seconds, args.concurrency,
                                               load_core, raw)  # fmt: skip
                        result.profiles.append(found)
                        print(f"profile N={n}: {[(p, round(s * 100, 1)) for p, s in found.phases[:6]]}", flush=True)
                if pinned and not args.no_unpinned:
                    _unpinned(result, ctx, drive, workload, sizes, args.rounds)
            finally:
                drive.files.close()
    result.machine_load = {"before": load_before[0], "after": os.getloadavg()[0]}
    result.machine_load |= {"5 min before": load_before[1], "5 min after": os.getloadavg()[1]}
    return result


def _unpinned(result: Comparison, ctx: Context, drive: Driver, workload: Workload, sizes: list[int], rounds: int
              ) -> None:  # fmt: skip
    """cascade-serve (logging on) against the hand-tuned route, by id, both free to use both cores."""
    free = Context(ctx.store, ctx.checkpoint, ctx.logs, ctx.redis_url, ctx.seed, None)
    specs = {spec.name: spec for spec in SERVERS}
    with this_process_on(ALL_CORES), _started(specs[CASCADE_ON], free) as ours, _started(specs[FASTAPI], free) as route:
        unpinned_drive = Driver(drive.kind, drive.concurrency, drive.seconds, drive.warmup, None)
        try:
            cells = [(CASCADE_ON, ours, BY_ID), (FASTAPI, route, BY_ID)]
            _rounds(result, unpinned_drive, workload, UNPINNED, cells, sizes, rounds)
        finally:
            unpinned_drive.files.close()
