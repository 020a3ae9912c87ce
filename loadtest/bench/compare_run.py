"""The `--peers` mode of `cascade bench`: install the peers if asked for and missing, build the bench store,
run the comparison (compare.py), write its raw numbers, its BENCHMARKS.md section and its plot."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from loadtest.bench.compare import comparison_from_json, peers_installed, run_comparison
from loadtest.bench.compare_report import write_comparison

ROOT = Path(__file__).resolve().parents[2]
RUN_SETTINGS = ("seconds", "warmup", "rounds", "concurrency", "per_size", "seed")  # what the report quotes


def install_peers() -> None:
    """The peers extra from its own lock, into this interpreter's environment (`make peers` does the same)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "requirements.lock")]
    command += ["-r", str(ROOT / "requirements-peers.lock")]
    print("installing the peers extra from requirements-peers.lock ...", flush=True)
    subprocess.run(command, check=True)


def compare_main(args: argparse.Namespace, command: str) -> int:
    from loadtest.bench.peer_servers import SERVERS
    from loadtest.bench.run import POLICY, build_bench_store
    from loadtest.bench.workload import build_workload
    from models.sim.config import SimConfig
    from models.sim.simulator import Simulator

    args.seconds = max(1, math.ceil(args.seconds))  # wrk counts whole seconds
    if args.render_only:
        raw = json.loads(args.results.read_text())
        for name, value in raw.get("settings", {}).items():  # the run's own settings, not this command's
            setattr(args, name, value)
        write_comparison(comparison_from_json(raw), args, raw["command"], raw.get("seconds", 0.0), raw.get("when"))
        print(f"rewrote the {args.out} section and {args.plot} from {args.results}")
        return 0
    wanted = [spec.name for spec in SERVERS if spec.needs_peers and spec.name not in args.skip]
    if wanted and not peers_installed():  # asked for with --peers, and not all of them skipped
        install_peers()
    sizes = [int(n) for n in args.sizes.split(",")]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        store, logs = Path(tmp) / "store", Path(tmp) / "logs"
        logs.mkdir()
        n_items = max(12_000, int(max(sizes) * 1.2))
        print("training and exporting the bench policy ...", flush=True)
        checkpoint = build_bench_store(store, n_items, args.train_steps)
        workload = build_workload(Simulator(replace(SimConfig(), n_items=n_items), seed=0), sizes, args.per_size)
        names = json.loads(next((store / POLICY).glob("*/manifest.json")).read_text())["fusion"]["names"]
        result = run_comparison(args, store, checkpoint, workload, logs, names)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    seconds = time.time() - started
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = {name: getattr(args, name) for name in RUN_SETTINGS}
    record = {"command": command, "when": when, "seconds": seconds, "settings": settings, **result.as_json()}
    args.results.write_text(json.dumps(record, indent=1))
    write_comparison(result, args, command, seconds, when)
    print(f"wrote {args.out}, {args.plot} and {args.results}")
    return 0
