"""A/B of two cascade-serve variants, side by side: alternating pinned rounds, ratio B / A per round.

`python -m loadtest.bench.ab --store STORE --b-env CASCADE_COMPUTE_THREADS=1` compares a setting;
`--a-tree DIR` (and `--b-tree DIR`) runs a variant from another checkout (e.g. `git archive HEAD` unpacked),
to keep a code change only if the harness shows it. Both servers stay up the whole time (logging on, the
same standalone Redis); the load alternates between them, ABBA, at concurrency 8, as in the server
comparison.

Two ratios per round: requests/s (B / A), and the server's CPU time per answered request (A / B, so that
above 1 means B is cheaper too). The second is hardly moved by other processes on the server's core: on
a shared machine it is the steadier verdict of a CPU-bound server.

`--simultaneous` loads both at once instead (two wrk, both servers sharing the core): whatever else runs on
the machine then slows both in the same seconds, and the CPU ratio compares them under the same conditions.
It suits variants with the same threads (the scheduler shares the core by thread, not by process).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from loadtest.bench.compare import Driver
from loadtest.bench.cpu_rounds import load_average, measured_together
from loadtest.bench.loadgen import Body
from loadtest.bench.peer_servers import BY_ID, Context, cascade_server
from loadtest.bench.pinning import LOAD_CORE, SERVER_CORE, can_pin, standalone_redis, this_process_on
from loadtest.bench.workload import ENCODINGS, build_workload
from loadtest.bench.wrk import Run


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def server_pid(port: int) -> int:
    """The `cascade serve` process listening on `port` (its command line names the port)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cascade_cli" in words and b"--port" in words and words[words.index(b"--port") + 1] == str(port).encode():
            return int(cmdline.parent.name)
    raise LookupError(f"no cascade serve process on port {port}")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--encoding", default=BY_ID, choices=ENCODINGS)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for variant A")
    parser.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for variant B")
    parser.add_argument("--a-tree", type=Path, default=None, help="run variant A from this source tree")
    parser.add_argument("--b-tree", type=Path, default=None, help="run variant B from this source tree")
    parser.add_argument("--n-items", type=int, default=12_000)
    parser.add_argument("--simultaneous", action="store_true", help="load A and B at the same time")
    args = parser.parse_args()
    from models.sim.config import SimConfig
    from models.sim.simulator import Simulator

    sizes = [int(n) for n in args.sizes.split(",")]
    workload = build_workload(Simulator(replace(SimConfig(), n_items=args.n_items), seed=0), sizes, 16)
    server_core, load_core = (SERVER_CORE, LOAD_CORE) if can_pin() else (None, None)
    print(f"load average before: {load_average()}", flush=True)
    with tempfile.TemporaryDirectory() as logs, this_process_on(load_core), standalone_redis(load_core) as url:
        ctx = Context(args.store, args.store / "unused.pt", Path(logs), url, 0, server_core)
        with ExitStack() as stack:
            a = stack.enter_context(cascade_server(ctx, True, _env(args.a_env), "a", args.a_tree))
            b = stack.enter_context(cascade_server(ctx, True, _env(args.b_env), "b", args.b_tree))
            ports = {"a": a, "b": b}
            pids = {name: server_pid(port) for name, port in ports.items()}
            drive = Driver("wrk", 8, args.seconds, 0, load_core)  # warm-up apart, so CPU counts measured requests
            try:
                for n in sizes:
                    bodies = workload.bodies[args.encoding, n]
                    ratios: list[float] = []
                    cpu_ratios: list[float] = []
                    tails: dict[str, list[float]] = {"a": [], "b": []}
                    drive.files.folder(bodies)  # written once, before the threads share it

                    def load(name: str, seconds: int | None = None, bodies: list[Body] = bodies) -> Run:
                        return drive(ports[name], bodies, seconds)

                    for r in range(args.rounds):
                        runs: dict[str, Run] = {}
                        cpu_ms: dict[str, float] = {}
                        order = ("a", "b") if r % 2 == 0 else ("b", "a")
                        for group in [order] if args.simultaneous else [order[:1], order[1:]]:
                            measured = measured_together(
                                {name: pids[name] for name in group},
                                load,
                                lambda run: run.requests,
                                warm_up=lambda name: load(name, 1),
                            )
                            for name, m in measured.items():
                                runs[name], cpu_ms[name] = m.result, m.cpu_ms
                                tails[name].append(m.result.p99_ms / m.result.p50_ms)
                        ratios.append(runs["b"].throughput / runs["a"].throughput)
                        cpu_ratios.append(cpu_ms["a"] / cpu_ms["b"])
                        print(f"N={n} round {r + 1}: A {runs['a'].throughput:.0f}/s {cpu_ms['a']:.2f} ms CPU, "
                              f"B {runs['b'].throughput:.0f}/s {cpu_ms['b']:.2f} ms CPU; B/A {ratios[-1]:.3f}, "
                              f"CPU A/B {cpu_ratios[-1]:.3f}", flush=True)  # fmt: skip
                    print(
                        f"N={n} {args.encoding}: B/A requests/s {_spread(ratios)}; CPU per request A/B "
                        f"{_spread(cpu_ratios)}; p99/p50 A {statistics.median(tails['a']):.2f}, "
                        f"B {statistics.median(tails['b']):.2f}",
                        flush=True,
                    )
            finally:
                drive.files.close()
    print(f"load average after: {load_average()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
