"""Benchmark results → a JSON file, BENCHMARKS.md (table, ratios against the targets, machine) and a PNG."""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from loadtest.bench.loadgen import LoadResult
from loadtest.bench.paired import LoggingCost
from loadtest.benchmarks_section import carry_sections

LIMIT = "limit (onnxruntime in-process)"


@dataclass(frozen=True)
class Measurement:
    config: str
    encoding: str
    n: int
    concurrency: int
    p50_ms: float
    p99_ms: float
    throughput: float  # requests per second
    requests: int
    errors: int

    @classmethod
    def of(cls, config: str, encoding: str, n: int, concurrency: int, result: LoadResult) -> Measurement:
        return cls(
            config,
            encoding,
            n,
            concurrency,
            result.percentile_ms(50),
            result.percentile_ms(99),
            result.throughput,
            len(result.latencies_s),
            result.errors,
        )

    @classmethod
    def limit(cls, n: int, p50_ms: float) -> Measurement:
        return cls(LIMIT, "tensors", n, 1, p50_ms, float("nan"), 1000 / p50_ms, 0, 0)

    def line(self) -> str:
        return (
            f"{self.config:38s} {self.encoding:15s} N={self.n:<6d} c={self.concurrency:<3d} "
            f"p50 {self.p50_ms:8.2f} ms  p99 {self.p99_ms:8.2f} ms  {self.throughput:8.1f}/s  errors {self.errors}"
        )


def _find(rows: list[Measurement], config: str, encoding: str, n: int, concurrency: int) -> Measurement | None:
    return next(
        (r for r in rows if (r.config, r.encoding, r.n, r.concurrency) == (config, encoding, n, concurrency)), None
    )


def _targets(
    rows: list[Measurement], n: int, c: int, sizes: list[int], logging: LoggingCost
) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured ratio, how it is computed, met?) for each target the harness reports against."""
    one = "cascade-serve 1 worker"
    limit = _find(rows, LIMIT, "tensors", n, 1)
    by_id = _find(rows, one, "json-by-id", n, c)
    by_id_1 = _find(rows, one, "json-by-id", n, 1)
    inline = _find(rows, one, "json-inline", n, c)
    tensors = _find(rows, one, "msgpack-tensor", n, c)
    baseline = _find(rows, "naive baseline", "json-inline", n, c)
    two = _find(rows, "cascade-serve 2 workers", "json-by-id", n, c)
    out: list[tuple[str, str, str, bool | None]] = []

    def add(name: str, value: float | None, how: str, ok: bool | None) -> None:
        out.append((name, "n/a" if value is None else f"{value:.2f}", how, ok))

    if limit and by_id:
        ratio = by_id.throughput / limit.throughput
        add(
            "by id: 1-worker throughput ≥ 0.80 × limit",
            ratio,
            f"{by_id.throughput:.0f}/s ÷ {limit.throughput:.0f}/s",
            ratio >= 0.8,
        )
    if limit and by_id_1:
        ratio = by_id_1.p50_ms / limit.p50_ms
        add(
            "by id: p50 at concurrency 1 ≤ 1.5 × limit p50",
            ratio,
            f"{by_id_1.p50_ms:.2f} ms ÷ {limit.p50_ms:.2f} ms",
            ratio <= 1.5,
        )
    if inline and baseline:
        ratio = inline.throughput / baseline.throughput
        add(
            "inline JSON: throughput ≥ 10 × naive baseline",
            ratio,
            f"{inline.throughput:.0f}/s ÷ {baseline.throughput:.1f}/s",
            ratio >= 10,
        )
    if tensors and by_id:
        ratio = tensors.throughput / by_id.throughput
        add(
            "binary tensors: throughput ≥ 0.5 × by id",
            ratio,
            f"{tensors.throughput:.0f}/s ÷ {by_id.throughput:.0f}/s",
            ratio >= 0.5,
        )
    if logging.rounds:
        low, high = logging.cost_range
        add(
            "logging on costs ≤ 5 % throughput",
            logging.median_cost * 100,
            f"median of 1 − on/off over {len(logging.rounds)} paired rounds, in % (range {low * 100:+.1f} to "
            f"{high * 100:+.1f})",
            logging.median_cost <= 0.05,
        )
    if two and by_id:
        ratio = two.throughput / by_id.throughput
        add("2 workers ≥ 1.8 × 1 worker", ratio, f"{two.throughput:.0f}/s ÷ {by_id.throughput:.0f}/s", ratio >= 1.8)
    small, large = min(sizes), max(sizes)
    for encoding in ("json-by-id", "json-inline", "msgpack-tensor"):
        a, b = _find(rows, one, encoding, small, 1), _find(rows, one, encoding, large, 1)
        if a and b and small < large:
            growth = b.p50_ms / a.p50_ms
            add(
                f"{encoding}: cost N={small}→{large} grows ≤ linearly (×{large // small})",
                growth,
                f"p50 {b.p50_ms:.2f} ms ÷ {a.p50_ms:.2f} ms at concurrency 1",
                growth <= large / small,
            )
    return out


def _machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {name: version(name) for name in ("onnxruntime", "fastapi", "uvicorn", "msgspec", "numpy", "torch")}
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), Linux {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(f"{k} {v}" for k, v in packages.items()),
    }


def write_report(
    rows: list[Measurement],
    args: argparse.Namespace,
    command: str,
    n: int,
    seconds: float,
    sweep: list[tuple[int, str, float]],
    logging: LoggingCost,
) -> None:
    sizes = sorted({r.n for r in rows})
    machine = _machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(
        json.dumps(
            {
                "command": command,
                "when": when,
                **machine,
                "rows": [asdict(r) for r in rows],
                "session_options": sweep,
                "logging_rounds": [asdict(r) for r in logging.rounds],
            },
            indent=1,
        )
    )
    _plot(rows, args.plot)
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {when} ({seconds / 60:.1f} min); raw numbers in `{args.results}`.",
        "",
        f"- Machine: {machine['machine']}; Python {machine['python']}.",
        f"- Packages: {machine['packages']}.",
        "- Load: a closed-loop HTTP/1.1 generator on raw asyncio sockets (loadtest/bench/loadgen.py) on the same",
        "  machine as the server, so both share its cores. Every server ran on 127.0.0.1 with an embedded Redis.",
        f"- Each configuration: {args.seconds:.0f} s measured after a 0.5 s warm-up, at concurrency 1 and"
        f" {args.concurrency}; {args.per_size} distinct requests per N, k = 10, stage sizes 500 → 100 → 50.",
        "- Encodings: `json-inline` (features and MTL predictions as JSON rows), `json-by-id` (ids only, rows from",
        "  the item table), `msgpack-tensor` (rows as raw little-endian float32 bytes in msgpack).",
        "",
        f"## Targets (N = {n}, concurrency {args.concurrency} unless said)",
        "",
        "| target | measured | from | met |",
        "|---|---|---|---|",
    ]
    for name, value, how, ok in _targets(rows, n, args.concurrency, sizes, logging):
        lines.append(f"| {name} | {value} | {how} | {'yes' if ok else 'no' if ok is False else '?'} |")
    lines += [
        "",
        "## All measurements",
        "",
        "| configuration | encoding | N | concurrency | p50 ms | p99 ms | requests/s | requests | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p99 = "" if r.p99_ms != r.p99_ms else f"{r.p99_ms:.2f}"  # NaN for the limit: one number, its median
        lines.append(
            f"| {r.config} | {r.encoding} | {r.n} | {r.concurrency} | {r.p50_ms:.2f} | {p99} | "
            f"{r.throughput:.1f} | {r.requests} | {r.errors} |"
        )
    lines += [
        "",
        f"## The cost of logging (N = {logging.n} by id, concurrency {logging.concurrency})",
        "",
        "Two 1-worker servers, logging on and off, both up for the whole comparison; the load alternates",
        f"between them in {logging.seconds:.0f} s rounds, ABBA-ordered (loadtest/bench/paired.py).",
        "",
        "| pair | logging on (req/s) | logging off (req/s) | cost | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {i + 1} | {r.on:.1f} | {r.off:.1f} | {r.cost * 100:+.1f} % | {r.errors} |"
            for i, r in enumerate(logging.rounds)
        ),
    ]
    lines += [
        "",
        f"## onnxruntime session options (the cascade graph in-process, N = {n})",
        "",
        "Workers serve with 1 intra-op thread and optimisation level `all` (service/bundle.py): one worker per core.",
        "",
        "| intra-op threads | graph optimisation | p50 ms |",
        "|---|---|---|",
        *(f"| {threads} | {level} | {p50:.3f} |" for threads, level, p50 in sweep),
        "",
        f"![p50 latency against N]({args.plot.name})",
        "",
    ]
    # Sections other writers keep in the file (the Locust run's) survive the rewrite.
    previous = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(carry_sections(previous, "\n".join(lines)))


def _plot(rows: list[Measurement], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    series = sorted({(r.config, r.encoding) for r in rows if r.concurrency == 1})
    for config, encoding in series:
        points = sorted((r.n, r.p50_ms) for r in rows if (r.config, r.encoding, r.concurrency) == (config, encoding, 1))
        if len(points) > 1:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, marker="o", label=f"{config}: {encoding}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("candidates per request (N)")
    axis.set_ylabel("p50 latency at concurrency 1 (ms)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
