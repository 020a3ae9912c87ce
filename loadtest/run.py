"""The load-test harness: start `cascade serve`, run Locust headless against it, stop the server, summarise.

    python -m loadtest.run --store store [--users 16 --spawn-rate 8 --seconds 30 --workers 1 --port 0]

Everything stays on loopback. Without REDIS_URL the harness starts an embedded Redis for the server
and removes it afterwards. The CSVs land in loadtest/results/<timestamp>/ (with the server's log);
the exit status is non-zero when the server never became ready, Locust failed, or any request failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pipelines.server import HOST, ServerNotReadyError, cascade_serve_command, free_port, start, stop, wait_ready

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RESULTS = Path(__file__).with_name("results")
RANK = "/v1/rank"  # the request names the locustfile gives, i.e. the rows of the stats CSV
FEEDBACK = "/v1/feedback"

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0  # uvicorn drains open requests, then the decision log flushes (≤ 5 s by default)
LOCUST_STOP_TIMEOUT_S = 5  # let users finish the task in flight, so a viewer's feedback is not cut short
LOCUST_MARGIN_S = 90.0  # locust start-up (pool generation) and CSV writing, on top of the run


@dataclass(frozen=True)
class Row:
    """One line of Locust's `<prefix>_stats.csv`."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def parse(cls, line: dict[str, str]) -> Row:
        def ms(key: str) -> float:
            return float(line[key]) if line[key] not in ("", "N/A") else float("nan")

        return cls(
            requests=int(line["Request Count"]),
            failures=int(line["Failure Count"]),
            rps=float(line["Requests/s"]),
            p50_ms=ms("50%"),
            p99_ms=ms("99%"),
        )


def read_stats(csv_prefix: Path) -> dict[str, Row]:
    """Rows of Locust's stats CSV by request name ("Aggregated" is the total)."""
    with Path(f"{csv_prefix}_stats.csv").open(newline="") as handle:
        return {line["Name"]: Row.parse(line) for line in csv.DictReader(handle)}


def run_locust(url: str, csv_prefix: Path, users: int, spawn_rate: float, seconds: int) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds}s",
        "--stop-timeout", str(LOCUST_STOP_TIMEOUT_S),
        "--host", url, "--csv", str(csv_prefix), "--only-summary",
    ]  # fmt: skip
    timeout_s = seconds + LOCUST_STOP_TIMEOUT_S + LOCUST_MARGIN_S
    try:
        # On a timeout (or Ctrl-C) subprocess.run kills Locust before raising.
        return subprocess.run(command, check=False, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        print(f"Locust still running after {timeout_s:.0f} s; killed it", file=sys.stderr)
        return 124


def summary(stats: dict[str, Row], users: int, seconds: int) -> str:
    total = stats.get("Aggregated") or Row(0, 0, 0.0, float("nan"), float("nan"))
    rank = stats.get(RANK) or Row(0, 0, 0.0, float("nan"), float("nan"))
    feedback = stats.get(FEEDBACK)
    line = (
        f"{users} users, {seconds} s: {total.requests} requests ({total.rps:.1f}/s), "
        f"{total.failures} failures; rank {rank.requests} ({rank.rps:.1f}/s) "
        f"p50 {rank.p50_ms:.0f} ms p99 {rank.p99_ms:.0f} ms"
    )
    if feedback is not None:
        line += f"; feedback {feedback.requests} p50 {feedback.p50_ms:.0f} ms p99 {feedback.p99_ms:.0f} ms"
    return line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="model store with an active bundle")
    parser.add_argument("--users", type=int, default=16, help="concurrent Locust users")
    parser.add_argument("--spawn-rate", type=float, default=8, help="users started per second")
    parser.add_argument("--seconds", type=int, default=30, help="run time once spawning starts")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    parser.add_argument("--port", type=int, default=0, help="server port; 0 picks a free one")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results root; one folder per run")
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
    store: Path = args.store.resolve()
    port = args.port or free_port()
    url = f"http://{HOST}:{port}"
    run_dir: Path = args.out / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix = run_dir / "stats"
    server_log = run_dir / "server.log"
    signal.signal(signal.SIGTERM, _terminate)

    external = os.environ.get("REDIS_URL") or os.environ.get("CASCADE_REDIS_URL")
    records: tuple[int, int] | None = None
    with tempfile.TemporaryDirectory(prefix="cascade-loadtest-redis-") as redis_dir:
        # Without REDIS_URL we own the embedded Redis rather than letting `cascade serve` start one:
        # the CLI's `finally: embedded.stop()` does not run when it is stopped by SIGTERM (uvicorn
        # re-raises the signal after its graceful shutdown) nor after a SIGKILL, and every run would
        # leave a redis-server behind. Owning it also lets us count what the server logged.
        embedded = None
        if not external:
            from service.embedded_redis import EmbeddedRedis

            embedded = EmbeddedRedis(Path(redis_dir))
        try:
            env = {"CASCADE_REDIS_URL": embedded.url} if embedded else {}
            server = start(cascade_serve_command(store, port, args.workers), env, server_log)
            try:
                print(f"server pid {server.pid} on {url} (log: {server_log})", flush=True)
                wait_ready(server, url, READY_TIMEOUT_S)
                locust_status = run_locust(url, csv_prefix, args.users, args.spawn_rate, args.seconds)
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
                embedded.stop()

    print(f"CSVs: {run_dir}/stats_*.csv, server log: {server_log}")
    try:
        stats = read_stats(csv_prefix)
    except (OSError, KeyError, ValueError) as exc:
        print(f"no readable Locust stats ({exc!r}); Locust exited with {locust_status}", file=sys.stderr)
        return 1
    print(summary(stats, args.users, args.seconds))
    total = stats.get("Aggregated")
    rank = stats.get(RANK)
    if records is not None:
        print(f"logged by the server: {records[0]} decision records, {records[1]} feedback records")
        if rank is not None and records[0] != rank.requests:
            # Every served ranking must reach the trainer; a gap means the decision log dropped some.
            print(f"warning: {rank.requests} rank requests but {records[0]} decisions", file=sys.stderr)
    if locust_status != 0 or total is None or total.failures > 0 or rank is None or rank.requests == 0:
        print(f"load test failed (Locust exit status {locust_status}); see {run_dir}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
