"""Where a pinned cascade-serve worker spends its time under load: py-spy with --gil, summed by phase.

`python -m loadtest.bench.profile --store STORE [--n 100] [--seconds 15]` starts cascade-serve (logging on)
pinned to core 0 with a standalone Redis, puts wrk load on it from core 1 (by id, concurrency 8), records the
worker with `py-spy record --gil` (only samples holding the GIL: what serialises the one core's Python), and
prints each phase's share of those samples. py-spy is not a project dependency: it comes with the peers
extra (Ray's), or `pip install py-spy` into the venv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from loadtest.bench.loadgen import Body
from loadtest.bench.peer_servers import BY_ID, CASCADE_ON, SERVERS, Context
from loadtest.bench.pinning import LOAD_CORE, SERVER_CORE, can_pin, on_core, standalone_redis
from loadtest.bench.workload import build_workload
from loadtest.bench.wrk import SCRIPT, BodyFiles

# Phase → substrings of a frame ("function (file)") that put a sample in it; the first match wins, from the leaf.
PHASES: dict[str, tuple[str, ...]] = {
    "onnxruntime run": ("run (onnxruntime", "run_cascade"),
    "id → row lookup + gather": ("rows_of", "table_matrices"),
    "body decode + checks": ("decode_body", "rank_inputs", "candidate_rows", "service/decode.py"),
    "decision record": ("decision_record", "service/records.py"),
    "decision log writer": ("service/decision_log.py", "service/spool.py"),
    "metrics": ("prometheus_client", "service/metrics.py"),
    "response encoding": ("service/responses.py", "encoded_response", "json_response"),
    "hot path + body read (service/hot_path.py)": ("service/hot_path.py", "service/http_body.py"),
    "ranker (rest)": ("service/ranker.py",),
    "executor hop (threads, futures)": ("concurrent/futures", "threading.py", "to_thread", "run_in_threadpool"),
    "routing + middleware (Starlette/FastAPI)": ("starlette/", "fastapi/"),
    "HTTP parsing (uvicorn/httptools)": ("uvicorn/", "httptools"),
    "event loop + asyncio": ("asyncio/", "uvloop"),
    "redis client": ("redis/",),
}


def phase_of(stack: list[str]) -> str:
    for frame in reversed(stack):  # leaf first
        for phase, needles in PHASES.items():
            if any(needle in frame for needle in needles):
                return phase
    return "other"


def summarise(raw: Path) -> tuple[Counter[str], Counter[str], int]:
    """(samples by phase, samples by leaf frame, total) from py-spy's raw (collapsed) output."""
    phases: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        phases[phase_of(stack)] += count
        leaves[stack[-1]] += count
        total += count
    return phases, leaves, total


@dataclass(frozen=True)
class Profile:
    n: int
    phases: list[tuple[str, float]]  # (phase, share of GIL samples), largest first
    leaves: list[tuple[str, float]]  # (leaf frame, share), largest first
    samples: int
    throughput: float  # requests/s while it was recorded (py-spy's sampling costs a little)


def find_py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def profile_worker(port: int, bodies: list[Body], n: int, seconds: int, concurrency: int, load_core: int | None,
                   raw: Path) -> Profile:  # fmt: skip
    """py-spy --gil on the worker listening on `port` while wrk (on `load_core`) loads it with `bodies`."""
    py_spy = find_py_spy()
    if py_spy is None:
        raise RuntimeError("py-spy is not installed: `make peers` or `.venv/bin/pip install py-spy`")
    files = BodyFiles()
    try:
        folder = files.folder(bodies)
        wrk = [
            "wrk", "-t1", f"-c{concurrency}", f"-d{seconds + 3}s", "-s", str(SCRIPT),
            f"http://127.0.0.1:{port}/v1/rank", "--", str(folder), str(len(bodies)), bodies[0].content_type,
        ]  # fmt: skip
        load = subprocess.Popen(on_core(wrk, load_core), stdout=subprocess.PIPE, text=True)
        try:
            record = [py_spy, "record", "--gil", "--nonblocking", "-r", "250", "-d", str(seconds)]
            record += ["-f", "raw", "-o", str(raw), "--pid", str(_server_pid(port))]
            subprocess.run(on_core(record, load_core), check=True, capture_output=True)
        finally:
            out, _ = load.communicate(timeout=120)
    finally:
        files.close()
    phases, leaves, total = summarise(raw)
    line = next((x for x in out.splitlines() if x.startswith('{"requests"')), "")
    figures = json.loads(line) if line else {"requests": 0, "duration_us": 1}
    return Profile(
        n,
        [(phase, count / total) for phase, count in phases.most_common()],
        [(frame, count / total) for frame, count in leaves.most_common(25)],
        total,
        figures["requests"] / (figures["duration_us"] / 1e6),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a bench store (cascade bench builds one)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--n-items", type=int, default=12_000, help="the catalogue size the store was built with")
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/profile.txt"))
    args = parser.parse_args()
    from models.sim.config import SimConfig
    from models.sim.simulator import Simulator

    workload = build_workload(Simulator(replace(SimConfig(), n_items=args.n_items), seed=0), [args.n], 16)
    pinned = can_pin()
    server_core, load_core = (SERVER_CORE, LOAD_CORE) if pinned else (None, None)
    spec = next(s for s in SERVERS if s.name == CASCADE_ON)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as logs, standalone_redis(load_core) as redis_url:
        ctx = Context(args.store, args.store / "unused.pt", Path(logs), redis_url, 0, server_core)
        with spec.start(ctx) as port:
            bodies = workload.bodies[BY_ID, args.n]
            found = profile_worker(port, bodies, args.n, args.seconds, args.concurrency, load_core,
                                   args.out.with_suffix(".raw"))  # fmt: skip
    lines = [f"py-spy --gil, cascade-serve (logging on), N={args.n} by id, c={args.concurrency}, pinned={pinned}"]
    lines.append(f"{found.throughput:.0f} requests/s while recorded, {found.samples} samples")
    lines += [f"{share * 100:5.1f} %  {phase}" for phase, share in found.phases]
    lines += ["", "top leaf frames:"]
    lines += [f"{share * 100:5.1f} %  {frame}" for frame, share in found.leaves]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _server_pid(port: int) -> int:
    """The PID listening on the port (the uvicorn worker: `cascade serve --workers 1` serves in-process)."""
    found = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(found.split("pid=")[1].split(",")[0])


if __name__ == "__main__":
    raise SystemExit(main())
