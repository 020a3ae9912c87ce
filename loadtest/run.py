"""The load-test harness: start `cascade serve`, run Locust headless against it, stop the server, summarise.

    python -m loadtest.run --store store [--users 16 --spawn-rate 8 --seconds 30 --workers 1 --port 0]

Everything stays on loopback. Without REDIS_URL the harness starts an embedded Redis for the server
and removes it afterwards. The CSVs land in loadtest/results/<timestamp>/ (with the server's log);
the exit status is non-zero when the server never became ready, Locust failed, or any request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
RESULTS = Path(__file__).with_name("results")
RANK = "/v1/rank"  # the request names the locustfile gives, i.e. the rows of the stats CSV
FEEDBACK = "/v1/feedback"

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0  # uvicorn drains open requests, then the decision log flushes (≤ 5 s by default)
LOCUST_STOP_TIMEOUT_S = 5  # let users finish the task in flight, so a viewer's feedback is not cut short
LOCUST_MARGIN_S = 90.0  # locust start-up (pool generation) and CSV writing, on top of the run


class ServerNotReadyError(RuntimeError):
    """The server exited, or /readyz did not answer 200 in time."""


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


def free_port() -> int:
    # The kernel picks an unused port; there is a small window before the server binds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start_server(
    store: Path, port: int, workers: int, redis_url: str | None, log: Path, env_extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`cascade serve` as a child in its own session, so Ctrl-C reaches only us and we stop it in order."""
    env = {**os.environ, **(env_extra or {})}
    if redis_url is not None:
        env["CASCADE_REDIS_URL"] = redis_url
    command = [
        sys.executable, "-m", "cascade_cli", "serve",
        "--store", str(store), "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    with log.open("wb") as sink:
        return subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(server: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    """Poll GET /readyz until 200; raise if the server exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerNotReadyError(f"server exited with status {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2.0) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"  # 503 while the bundle loads
        except OSError as exc:
            last = type(exc).__name__  # not listening yet
        time.sleep(0.2)
    raise ServerNotReadyError(f"/readyz not 200 after {timeout_s:.0f} s (last: {last})")


def stop_server(server: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM (uvicorn drains, the CLI stops its Redis), then SIGKILL the whole group after the grace."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            print(f"server ignored SIGTERM for {grace_s:.0f} s; killing it", file=sys.stderr)
    # Worker processes or a redis-server left behind by an unclean exit share the server's group.
    with contextlib.suppress(ProcessLookupError):  # the group is gone: the clean case
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


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

    from service.settings import Settings

    settings = Settings()
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xlen(settings.decision_stream)), int(client.xlen(settings.feedback_stream))
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
            server = start_server(store, port, args.workers, embedded.url if embedded else None, server_log)
            try:
                print(f"server pid {server.pid} on {url} (log: {server_log})", flush=True)
                wait_ready(server, url, READY_TIMEOUT_S)
                locust_status = run_locust(url, csv_prefix, args.users, args.spawn_rate, args.seconds)
            finally:
                stop_server(server, STOP_GRACE_S)  # also flushes the server's decision log
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
