"""A/B of two cascade-serve variants, side by side: alternating pinned rounds, ratio B / A per round.

`python -m loadtest.bench.ab --store STORE --b-env CASCADE_COMPUTE_THREADS=1` compares a setting;
`--a-tree DIR` runs variant A from another checkout (e.g. `git archive HEAD` unpacked), to keep a code change
only if the harness shows it. Both servers stay up the whole time (logging on, the same standalone Redis);
the load alternates between them, ABBA, by id at concurrency 8, as in the server comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from loadtest.bench.compare import Driver
from loadtest.bench.peer_servers import BY_ID, Context, cascade_server
from loadtest.bench.pinning import LOAD_CORE, SERVER_CORE, can_pin, standalone_redis, this_process_on
from loadtest.bench.workload import build_workload


def _env(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for variant A")
    parser.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for variant B")
    parser.add_argument("--a-tree", type=Path, default=None, help="run variant A from this source tree")
    parser.add_argument("--n-items", type=int, default=12_000)
    args = parser.parse_args()
    from models.sim.config import SimConfig
    from models.sim.simulator import Simulator

    sizes = [int(n) for n in args.sizes.split(",")]
    workload = build_workload(Simulator(replace(SimConfig(), n_items=args.n_items), seed=0), sizes, 16)
    server_core, load_core = (SERVER_CORE, LOAD_CORE) if can_pin() else (None, None)
    with tempfile.TemporaryDirectory() as logs, this_process_on(load_core), standalone_redis(load_core) as url:
        ctx = Context(args.store, args.store / "unused.pt", Path(logs), url, 0, server_core)
        with ExitStack() as stack:
            a = stack.enter_context(cascade_server(ctx, True, _env(args.a_env), "a", args.a_tree))
            b = stack.enter_context(cascade_server(ctx, True, _env(args.b_env), "b"))
            drive = Driver("wrk", 8, args.seconds, 1, load_core)
            try:
                for n in sizes:
                    ratios, tails = [], {"a": [], "b": []}
                    for r in range(args.rounds):
                        runs = {}
                        for name, port in (("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a)):
                            runs[name] = drive(port, workload.bodies[BY_ID, n])
                            tails[name].append(runs[name].p99_ms / runs[name].p50_ms)
                        ratios.append(runs["b"].throughput / runs["a"].throughput)
                        print(f"N={n} round {r + 1}: A {runs['a'].throughput:.0f}/s B {runs['b'].throughput:.0f}/s "
                              f"B/A {ratios[-1]:.3f}", flush=True)  # fmt: skip
                    print(
                        f"N={n}: B/A median {statistics.median(ratios):.3f} [{min(ratios):.3f}–{max(ratios):.3f}]; "
                        f"p99/p50 A {statistics.median(tails['a']):.2f}, B {statistics.median(tails['b']):.2f}",
                        flush=True,
                    )
            finally:
                drive.files.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
