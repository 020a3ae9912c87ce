"""Load from wrk (Debian's package), a C closed-loop generator, or the raw-socket one (loadgen.py).

wrk keeps `concurrency` keep-alive connections busy from one thread, cycling through pre-encoded bodies
(bodies.lua), and reports throughput, p50 and p99. Both generators report what they cost (CPU seconds
of the generator per request), so the harness can show it picked the cheaper one.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.bench.loadgen import HOST, Body, drive
from loadtest.bench.pinning import on_core

SCRIPT = Path(__file__).with_name("bodies.lua")


@dataclass(frozen=True)
class Run:
    """One measured run of one server on one request set."""

    throughput: float  # requests per second
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    load_cpu_s: float  # CPU the load generator spent

    @property
    def load_cpu_us_per_request(self) -> float:
        return self.load_cpu_s / self.requests * 1e6 if self.requests else float("nan")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


class BodyFiles:
    """Each request set written once as files for wrk's script; removed with the object's folder."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="cascade-bench-bodies-"))
        self._sets: dict[int, Path] = {}

    def folder(self, bodies: Sequence[Body]) -> Path:
        key = id(bodies)
        if key not in self._sets:
            target = self._folder / str(len(self._sets))
            target.mkdir()
            for i, body in enumerate(bodies, start=1):
                (target / f"{i}.body").write_bytes(body.data)
            self._sets[key] = target
        return self._sets[key]

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk(port: int, path: str, folder: Path, bodies: Sequence[Body], concurrency: int, seconds: int, core: int | None
         ) -> tuple[dict[str, float], float]:  # fmt: skip
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s", "-s", str(SCRIPT),
        f"http://{HOST}:{port}{path}", "--", str(folder), str(len(bodies)), bodies[0].content_type,
    ]  # fmt: skip
    before = _children_cpu()
    done = subprocess.run(on_core(command, core), capture_output=True, text=True, check=True)
    cpu = _children_cpu() - before
    line = next(line for line in done.stdout.splitlines() if line.startswith('{"requests"'))
    return json.loads(line), cpu


def drive_wrk(
    port: int,
    path: str,
    bodies: Sequence[Body],
    files: BodyFiles,
    concurrency: int,
    seconds: int,
    warmup: int,
    core: int | None,
) -> Run:
    """A warm-up run (discarded), then `seconds` measured, both with wrk pinned to `core`."""
    folder = files.folder(bodies)
    if warmup:
        _wrk(port, path, folder, bodies, concurrency, warmup, core)
    figures, cpu = _wrk(port, path, folder, bodies, concurrency, seconds, core)
    requests = int(figures["requests"])
    return Run(
        throughput=requests / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=requests,
        errors=int(figures["status_errors"] + figures["socket_errors"]),
        load_cpu_s=cpu,
    )


def drive_sockets(port: int, path: str, bodies: Sequence[Body], concurrency: int, seconds: int, warmup: int) -> Run:
    """The same measurement with the raw-socket generator, in this process (pinned where this process is)."""
    before = time.process_time()
    result = drive(port, path, bodies, concurrency, float(seconds), float(warmup))
    cpu = time.process_time() - before
    total = len(result.latencies_s)
    # The warm-up's requests are not recorded but cost CPU too: scale to the measured share of the time.
    share = seconds / (seconds + warmup)
    return Run(
        result.throughput,
        result.percentile_ms(50),
        result.percentile_ms(99),
        total,
        result.errors,
        cpu * share,
    )
