"""`cascade bench`: one run measures the compute limit, cascade-serve and the naive baseline, same requests.

1. the limit: the cascade graph in onnxruntime in-process (p50 of one call), no HTTP, no decoding;
2. cascade-serve over HTTP on 127.0.0.1: 1 worker with logging on (every encoding and N) and 2 workers
   (N = 1,000, by id);
3. the cost of logging: paired, alternating rounds against a logging and a non-logging server, both kept
   up for the whole comparison (loadtest/bench/paired.py), N = 1,000 by id;
4. the naive baseline (loadtest/baselines/naive_fastapi.py), inline JSON.
Each configuration runs at concurrency 1 (latency) and at a fixed concurrency (throughput). The
results go to a JSON file, to BENCHMARKS.md (with the machine and the command) and to a PNG plot.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from loadtest.bench.limit import compute_p50_ms, session_option_sweep
from loadtest.bench.loadgen import Body, LoadResult, drive
from loadtest.bench.paired import measure_logging_cost
from loadtest.bench.report import Measurement, write_report
from loadtest.bench.servers import cascade_serve, naive_baseline
from loadtest.bench.workload import ENCODINGS, build_workload

POLICY = "demo"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cascade bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="candidate counts N, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per configuration")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight for throughput")
    parser.add_argument("--logging-rounds", type=int, default=8, help="paired rounds for the logging cost")
    parser.add_argument("--per-size", type=int, default=16, help="distinct requests per N")
    parser.add_argument("--train-steps", type=int, default=None, help="fewer training steps (harness tests only)")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument("--plot", type=Path, default=Path("BENCHMARKS.png"))
    parser.add_argument("--results", type=Path, default=None, help="raw numbers (default by mode, see below)")
    peers = parser.add_argument_group("--peers: cascade-serve against the peers (loadtest/bench/compare.py)")
    peers.add_argument("--peers", action="store_true", help="run the server comparison (installs the peers extra)")
    peers.add_argument("--rounds", type=int, default=3, help="alternating rounds per N and server")
    peers.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each measured run")
    peers.add_argument("--gate-per-cell", type=int, default=3, help="gate requests per (N, encoding)")
    peers.add_argument("--seed", type=int, default=0, help="the exploration seed every server starts with")
    peers.add_argument("--loadgen", choices=("auto", "wrk", "sockets"), default="auto")
    peers.add_argument("--no-pin", action="store_true", help="do not pin servers and load to cores")
    peers.add_argument("--no-unpinned", action="store_true", help="skip the unpinned cascade-serve vs route rounds")
    peers.add_argument("--profile-seconds", type=int, default=10, help="py-spy seconds per profiled N (0: none)")
    peers.add_argument("--render-only", action="store_true", help="rewrite the section from --results, no run")
    peers.add_argument("--skip", default="", help="servers not to measure, comma-separated names")
    args = parser.parse_args(argv)
    if args.peers:
        args.sizes = args.sizes if "--sizes" in (argv or sys.argv) else "100,1000,5000"
        args.plot = args.plot if "--plot" in (argv or sys.argv) else Path("BENCHMARKS-servers.png")
        args.skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    args.results = args.results or Path(f"loadtest/bench/results{'-peers' if args.peers else ''}.json")
    return args


def build_bench_store(store: Path, n_items: int, train_steps: int | None = None) -> Path:
    """Train the demo policy on a catalogue large enough for the biggest N; save its torch weights too."""
    from loadtest.baselines.naive_fastapi import save_checkpoint
    from models.algorithms.demo_policy import DemoConfig, train_demo_policy
    from models.sim.config import SimConfig
    from pipelines.demo import publish_demo

    config = DemoConfig(sim=replace(SimConfig(), n_items=n_items))
    if train_steps is not None:  # speed only: the served cost does not depend on how well the policy learned
        config = replace(
            config, head_steps=train_steps, rnd_steps=train_steps, a3c=replace(config.a3c, steps=train_steps)
        )
    trained = train_demo_policy(config)
    manifest = publish_demo(trained, store, config, policy=POLICY)
    checkpoint = store / "baseline-policy.pt"
    exploration = (manifest.fusion.exploration.probability, manifest.fusion.exploration.noise_clip)
    save_checkpoint(trained.policy, manifest.stage_sizes, manifest.fusion.names, checkpoint, exploration)
    return checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        from loadtest.bench.compare_run import compare_main

        return compare_main(args, " ".join(["cascade bench", *(argv if argv is not None else sys.argv[1:])]))
    sizes = [int(n) for n in args.sizes.split(",")]
    reference = 1000 if 1000 in sizes else sizes[len(sizes) // 2]
    command = " ".join(["cascade bench", *(argv if argv is not None else sys.argv[1:])])
    measurements: list[Measurement] = []
    started = time.time()

    def measure(config: str, encoding: str, n: int, port: int, bodies: list[Body], path: str = "/v1/rank") -> None:
        for concurrency in sorted({1, args.concurrency}):
            result: LoadResult = drive(port, path, bodies, concurrency, args.seconds)
            row = Measurement.of(config, encoding, n, concurrency, result)
            measurements.append(row)
            print(row.line(), flush=True)

    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        store, logs = Path(tmp) / "store", Path(tmp) / "logs"
        logs.mkdir()
        print("training and exporting the bench policy ...", flush=True)
        checkpoint = build_bench_store(store, max(12_000, int(max(sizes) * 1.2)), args.train_steps)
        from models.sim.config import SimConfig
        from models.sim.simulator import Simulator

        sim = Simulator(replace(SimConfig(), n_items=max(12_000, int(max(sizes) * 1.2))), seed=0)
        workload = build_workload(sim, sizes, args.per_size)
        for n in sizes:
            p50 = compute_p50_ms(store, POLICY, workload.raw[n], repeats=max(50, 20_000 // n))
            measurements.append(Measurement.limit(n, p50))
            print(measurements[-1].line(), flush=True)
        sweep = session_option_sweep(store, POLICY, workload.raw[reference], repeats=200)
        for threads, level, p50 in sweep:
            print(f"session options: {threads} intra-op thread(s), optimisation {level}: p50 {p50:.3f} ms")
        with cascade_serve(store, workers=1, log_decisions=True, logs=logs) as port:
            for n in sizes:
                for encoding in ENCODINGS:
                    measure("cascade-serve 1 worker", encoding, n, port, workload.bodies[encoding, n])
        by_id = workload.bodies["json-by-id", reference]
        logging = measure_logging_cost(
            store, logs, by_id, reference, args.concurrency, args.logging_rounds, args.seconds
        )
        with cascade_serve(store, workers=2, log_decisions=True, logs=logs) as port:
            measure("cascade-serve 2 workers", "json-by-id", reference, port, by_id)
        with naive_baseline(checkpoint, logs) as port:
            for n in sizes:
                measure("naive baseline", "json-inline", n, port, workload.bodies["json-inline", n])
    write_report(measurements, args, command, reference, time.time() - started, sweep, logging)
    print(f"wrote {args.out}, {args.plot} and {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
