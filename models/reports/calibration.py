"""The calibration table of simulator v2 (SIMULATOR.md): target, measured, relative error, within ±10 %."""

from __future__ import annotations

import numpy as np

from models.reports.stats import format_seeds
from models.sim.calibration import Target, calibration_table


def calibration_rows(seeds: tuple[int, ...], users: int = 20_000, sessions: int = 2_000) -> list[dict[str, object]]:
    """Each target measured on every seed's world: mean, min and max over the seeds, and the verdict."""
    tables: list[list[Target]] = [calibration_table(seed, users, sessions) for seed in seeds]
    rows: list[dict[str, object]] = []
    for i, first in enumerate(tables[0]):
        measured = np.array([table[i].measured for table in tables])
        error = (measured.mean() - first.target) / first.target
        rows.append(
            {
                "name": first.name,
                "source": first.source,
                "target": first.target,
                "measured": float(measured.mean()),
                "low": float(measured.min()),
                "high": float(measured.max()),
                "error": float(error),
                "tolerance": first.tolerance,
                "within": bool(abs(error) <= first.tolerance),
            }
        )
    return rows


def calibration_markdown(seeds: tuple[int, ...], users: int = 20_000, sessions: int = 2_000) -> str:
    rows = calibration_rows(seeds, users, sessions)
    lines = [
        f"Calibration of simulator v2 on worlds {format_seeds(list(seeds))} ({users} users per exposure policy, "
        f"{sessions} sessions per session policy; measured = mean over the worlds, [min, max] beside it).",
        "",
        "| target | source | target value | measured [min, max] | relative error | within |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        tol = float(r["tolerance"])  # type: ignore[arg-type]
        mark = "yes" if r["within"] else "**no**"
        if tol != 0.10:
            mark += f" (±{tol:.0%})"
        lines.append(
            f"| {r['name']} | {r['source']} | {float(r['target']):.4g} "  # type: ignore[arg-type]
            f"| {float(r['measured']):.4g} [{float(r['low']):.4g}, {float(r['high']):.4g}] "  # type: ignore[arg-type]
            f"| {float(r['error']):+.1%} | {mark} |"  # type: ignore[arg-type]
        )
    n_in = sum(bool(r["within"]) for r in rows)
    lines += ["", f"{n_in} of {len(rows)} targets within tolerance."]
    return "\n".join(lines)
