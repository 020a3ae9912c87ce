"""The load-test harness: start `cascade serve`, run Locust headless against it, stop the server, summarise.

    python -m loadtest.run --store store [--users 8 --spawn-rate 4 --seconds 30 --workers 1]
    python -m loadtest.run --store store --ramp          # the p99 step ramp (loadtest/ramp.py)
    python -m loadtest.run --store store --benchmarks BENCHMARKS.md   # also write its Locust section

Everything stays on loopback. The server serves a copy of the store with one more version of the
policy, so the operator user can canary, promote and roll back during the run without touching the
given store. Without REDIS_URL the harness starts an embedded Redis and removes it afterwards. The
CSVs, the HTML report and the server's log land in loadtest/results/<timestamp>/; the exit status is
non-zero when the server never became ready, Locust failed, or any request failed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from loadtest.bench.sections import write_section
from loadtest.phases import SERVER
from loadtest.step_stats import summary_line
from loadtest.store_copy import copy_with_extra_version
from pipelines.server import HOST, ServerNotReadyError, cascade_serve_command, free_port, start, stop, wait_ready

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RAMPFILE = Path(__file__).with_name("ramp.py")
RESULTS = Path(__file__).with_name("results")
RANK = "/v1/rank"  # prefix of the rank rows of the stats CSV (one per kind of request in the mix)
FEEDBACK = "/v1/feedback"
ADMIN_TOKEN = "loadtest-operator"  # the server started here is loopback-only and lives for one run

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0  # the server drains open requests, then the decision log flushes (≤ 5 s by default)
LOCUST_STOP_TIMEOUT_S = 5  # let users finish the task in flight, so a viewer's feedback is not cut short
LOCUST_MARGIN_S = 90.0  # locust start-up (pool generation) and CSV writing, on top of the run
RAMP_LIMIT_S = 900  # the ramp ends itself; this only bounds a ramp whose p99 never crosses
LOADED = (
    "The load average exceeded the core count: other work shared the cores, so these are not a quiet machine's numbers."
)


@dataclass(frozen=True)
class Row:
    """One line of Locust's `<prefix>_stats.csv`."""

    kind: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def parse(cls, line: dict[str, str]) -> Row:
        def ms(key: str) -> float:
            return float(line[key]) if line[key] not in ("", "N/A") else float("nan")

        return cls(
            kind=line["Type"],
            requests=int(line["Request Count"]),
            failures=int(line["Failure Count"]),
            rps=float(line["Requests/s"]),
            p50_ms=ms("50%"),
            p95_ms=ms("95%"),
            p99_ms=ms("99%"),
        )


def read_stats(csv_prefix: Path) -> dict[str, Row]:
    """Rows of Locust's stats CSV by request name ("Aggregated" is the total, phases included)."""
    with Path(f"{csv_prefix}_stats.csv").open(newline="") as handle:
        return {line["Name"]: Row.parse(line) for line in csv.DictReader(handle)}


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_locust(url: str, run_dir: Path, args: argparse.Namespace, env: dict[str, str]) -> int:
    files = f"{LOCUSTFILE},{RAMPFILE}" if args.ramp else str(LOCUSTFILE)
    command = [
        sys.executable, "-m", "locust", "-f", files, "--headless",
        "--stop-timeout", str(LOCUST_STOP_TIMEOUT_S),
        "--host", url, "--csv", str(run_dir / "stats"), "--html", str(run_dir / "report.html"), "--only-summary",
    ]  # fmt: skip
    if args.ramp:
        seconds = RAMP_LIMIT_S
        command += ["-t", f"{seconds}s"]
    else:
        seconds = args.seconds
        command += ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{seconds}s"]
    timeout_s = seconds + LOCUST_STOP_TIMEOUT_S + LOCUST_MARGIN_S
    try:
        # On a timeout (or Ctrl-C) subprocess.run kills Locust before raising.
        return subprocess.run(command, check=False, timeout=timeout_s, env={**os.environ, **env}).returncode
    except subprocess.TimeoutExpired:
        print(f"Locust still running after {timeout_s:.0f} s; killed it", file=sys.stderr)
        return 124


def _ms(value: float) -> str:
    return f"{value:.0f}" if value == value else "n/a"  # nan → n/a


def summary(stats: dict[str, Row], rank: dict[str, Any] | None) -> list[str]:
    """Throughput and p50/p95/p99: all rank requests together, each row, the server's phases."""
    lines = []
    requests = sum(r.requests for name, r in stats.items() if name != "Aggregated" and r.kind != SERVER)
    failures = sum(r.failures for name, r in stats.items() if name != "Aggregated" and r.kind != SERVER)
    if rank is not None:
        lines.append(
            f"rank (all kinds): {rank['requests']} requests, {rank['rps']:.1f}/s, p50 {_ms(rank['p50_ms'])} ms "
            f"p95 {_ms(rank['p95_ms'])} ms p99 {_ms(rank['p99_ms'])} ms"
        )
    lines.append(f"all HTTP requests: {requests}, failures: {failures}")
    for name, row in sorted(stats.items()):
        if name == "Aggregated":
            continue
        side = "server phase" if row.kind == SERVER else row.kind
        lines.append(
            f"  {side} {name}: {row.requests} ({row.rps:.1f}/s) p50 {_ms(row.p50_ms)} ms "
            f"p95 {_ms(row.p95_ms)} ms p99 {_ms(row.p99_ms)} ms, {row.failures} failures"
        )
    return lines


def benchmarks_markdown(command: str, lines: list[str], ramp: dict[str, Any] | None, load: str) -> str:
    """The Locust section of BENCHMARKS.md: the machine, the command, the numbers."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    title = "## Locust step ramp (`make loadtest LOADTEST_ARGS=--ramp`)" if ramp else "## Locust (`make loadtest`)"
    body = [
        title,
        "",
        f"Written by `{command}` on {when}. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; Locust and the server shared the machine (load average "
        f"before the run: {load}). Client-side latency, server on 127.0.0.1 with an embedded Redis.",
        *(["", LOADED] if float(load.split()[0]) > (os.cpu_count() or 1) else []),
        "",
        "```",
        *lines,
        "```",
    ]
    if ramp is not None:
        body += ["", f"Step ramp: {summary_line(ramp)}.", "", "| step | users | rank/s | p50 ms | p95 ms | p99 ms |"]
        body += ["|---|---|---|---|---|---|"]
        body += [
            f"| {s['step']} | {s['users']} | {s['rps']:.1f} | {_ms(s['p50_ms'])} | {_ms(s['p95_ms'])} "
            f"| {_ms(s['p99_ms'])} |"
            for s in ramp["steps"]
        ]
    return "\n".join(body)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="model store with an active bundle")
    parser.add_argument("--users", type=int, default=8, help="concurrent Locust users")
    parser.add_argument("--spawn-rate", type=float, default=4, help="users started per second")
    parser.add_argument("--seconds", type=int, default=30, help="run time once spawning starts")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the server")
    parser.add_argument("--port", type=int, default=0, help="server port; 0 picks a free one")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results root; one folder per run")
    parser.add_argument("--ramp", action="store_true", help="step ramp until the rank p99 crosses its bound")
    parser.add_argument("--no-operator", action="store_true", help="no operator swapping versions")
    parser.add_argument("--benchmarks", type=Path, help="write the numbers into this BENCHMARKS.md's Locust section")
    return parser.parse_args(argv)


def _terminate(signum: int, _: FrameType | None) -> None:
    # SIGTERM (e.g. make or CI killed) unwinds like Ctrl-C, so the finally below stops the server.
    raise SystemExit(128 + signum)


def count_records(redis_url: str) -> tuple[int, int]:
    """Decision and feedback records the server wrote (its streams, named by the same settings)."""
    import redis

    from contracts.streams import decision_shards_key
    from service.settings import Settings

    settings = Settings()
    client = redis.Redis.from_url(redis_url)
    try:
        # Decisions are in one shard per (policy, worker), listed in the shards set.
        shards = client.smembers(decision_shards_key(settings.decision_stream))
        decisions = sum(int(client.xlen(shard)) for shard in shards)
        return decisions, int(client.xlen(settings.feedback_stream))
    finally:
        client.close()  # before the embedded server stops: it shuts down only with no client left


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    port = args.port or free_port()
    url = f"http://{HOST}:{port}"
    run_dir: Path = args.out / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    server_log = run_dir / "server.log"
    signal.signal(signal.SIGTERM, _terminate)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())

    external = os.environ.get("REDIS_URL") or os.environ.get("CASCADE_REDIS_URL")
    records: tuple[int, int] | None = None
    # Locust draws its requests from the world of the store's demo policy (loadtest/store_world.py).
    locust_env = {"LOADTEST_STORE": str(args.store.resolve())}
    locust_env |= {} if args.no_operator else {"LOADTEST_ADMIN_TOKEN": ADMIN_TOKEN}
    with tempfile.TemporaryDirectory(prefix="cascade-loadtest-") as scratch:
        store = copy_with_extra_version(args.store.resolve(), Path(scratch) / "store")
        # Without REDIS_URL we own the embedded Redis rather than letting `cascade serve` start one:
        # the CLI's `finally: embedded.stop()` does not run when it is stopped by SIGTERM nor after a
        # SIGKILL, and every run would leave a redis-server behind. Owning it also lets us count what
        # the server logged.
        embedded = None
        if not external:
            from service.embedded_redis import EmbeddedRedis

            embedded = EmbeddedRedis(Path(scratch) / "redis")
        try:
            env = {"CASCADE_REDIS_URL": embedded.url} if embedded else {}
            env |= {"CASCADE_ADMIN_TOKEN": ADMIN_TOKEN, "CASCADE_LOG_SPOOL_DIR": str(Path(scratch) / "spool")}
            server = start(cascade_serve_command(store, port, args.workers), env, server_log)
            try:
                print(f"server pid {server.pid} on {url} (log: {server_log})", flush=True)
                wait_ready(server, url, READY_TIMEOUT_S)
                locust_status = run_locust(url, run_dir, args, locust_env)
            finally:
                stop(server, STOP_GRACE_S)  # also flushes the server's decision log
            if embedded is not None:
                records = count_records(embedded.url)
        except ServerNotReadyError as exc:
            print(f"server never became ready: {exc}; see {server_log}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; server stopped", file=sys.stderr)
            return 130
        finally:
            if embedded is not None:
                embedded.stop(disconnect_others=True)  # ours alone: a lingering client must not keep it up

    print(f"results: {run_dir} (stats_*.csv, report.html, server.log)")
    try:
        stats = read_stats(run_dir / "stats")
    except (OSError, KeyError, ValueError) as exc:
        print(f"no readable Locust stats ({exc!r}); Locust exited with {locust_status}", file=sys.stderr)
        return 1
    rank = read_json(Path(f"{run_dir / 'stats'}_rank.json"))
    ramp = read_json(Path(f"{run_dir / 'stats'}_ramp.json"))
    lines = summary(stats, rank)
    if records is not None:
        lines.append(f"logged by the server: {records[0]} decision records, {records[1]} feedback records")
    print("\n".join(lines))
    if args.benchmarks is not None:
        command = "python -m loadtest.run " + " ".join(argv if argv is not None else sys.argv[1:])
        section = benchmarks_markdown(command, lines, ramp, load)
        # The plain run and the ramp keep a section each, so writing one leaves the other.
        write_section(args.benchmarks, "locust-ramp" if ramp else "locust", section)
        print(f"wrote the Locust section of {args.benchmarks}")
    if records is not None and rank is not None and records[0] != rank["requests"]:
        # Every served ranking must reach the trainer; a gap means the decision log dropped some.
        print(f"warning: {rank['requests']} rank requests but {records[0]} decisions", file=sys.stderr)
    failures = sum(r.failures for name, r in stats.items() if name != "Aggregated")
    if locust_status != 0 or failures > 0 or rank is None or rank["requests"] == 0:
        print(f"load test failed (Locust exit status {locust_status}); see {run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
