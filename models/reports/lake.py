"""`cascade report`: what the decision log says about each policy version and arm, read from the lake.

Per (policy, version, arm), over the decisions whose reward window has closed (models/log/lake_join.py):
decisions; join rate (the share with at least one on-time feedback event); reward per request (the
joined reward, the default for the silent ones); exploration rate; the spread of the logged fusion
actions (standard deviation per action dimension); the smallest propensities of the explored decisions
(log μ(a|s), a density for the Gaussian head); and the effective sample size (Σw)²/Σw² of the inverse
propensity weights w = 1/μ(a|s) of the explored decisions: what an importance-weighted estimate from
this log can lean on (the models/ope estimators report the same quantity for a given target policy). A
few very small propensities dominate 1/μ, and the ESS then falls far below the count: a warning
that off-policy estimates on this log will be noisy. Written as a Markdown page with PNG plots.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.lake import dataset_files
from models.log.lake_join import connect, joined_rows
from models.log.reward_join import JoinConfig

Key = tuple[str, str, str]  # (policy, version, arm)


@dataclass
class ArmSummary:
    policy: str
    version: str
    arm: str
    decisions: int
    join_rate: float
    reward_per_request: float
    exploration_rate: float
    action_names: list[str]
    action_std: list[float]  # per action dimension, over all decisions
    smallest_log_propensities: list[float]  # explored decisions, smallest first (up to 5)
    ess: float  # of w = 1/μ over explored decisions; 0 without any
    explored: int
    actions: np.ndarray = field(repr=False)  # [decisions, A] for the plots
    log_propensities: np.ndarray = field(repr=False)  # [explored]


def effective_sample_size(log_propensities: np.ndarray) -> float:
    """(Σw)²/Σw² of w = exp(−log μ), computed from the logs so tiny densities do not overflow."""
    if log_propensities.size == 0:
        return 0.0
    log_w = -log_propensities.astype(np.float64)
    w = np.exp(log_w - log_w.max())  # the common scale cancels in the ratio
    return float(w.sum() ** 2 / np.square(w).sum())


def summarize(lake: Path, config: JoinConfig, now: float) -> list[ArmSummary]:
    """One summary per (policy, version, arm) of the lake's closed decisions."""
    if not dataset_files(lake, "decisions"):
        return []
    con = connect(lake)
    try:
        if not config.weights:
            config = JoinConfig(config.window_seconds, config.rule, config.default_reward, _unit_weights(con))
        rows = joined_rows(con, config, now)
    finally:
        con.close()
    groups: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["policy"], row["version"], row["arm"])].append(row)
    return [_summary(key, group) for key, group in sorted(groups.items())]


def _unit_weights(con: Any) -> dict[str, float]:
    """Every reward signal the feedback holds, weighted 1 (the report's default when none are given)."""
    names = con.sql("SELECT DISTINCT unnest(map_keys(rewards)) AS name FROM feedback ORDER BY name").fetchall()
    return {str(name): 1.0 for (name,) in names}


def _summary(key: Key, rows: list[dict[str, Any]]) -> ArmSummary:
    actions = np.asarray([r["fusion"]["action"] for r in rows], dtype=np.float64)
    explored = np.asarray([bool(r["explored"]) for r in rows])
    log_mu = np.asarray([r["log_prob"] for r in rows], dtype=np.float64)[explored]
    return ArmSummary(
        policy=key[0],
        version=key[1],
        arm=key[2],
        decisions=len(rows),
        join_rate=float(np.mean([r["_events"] > 0 for r in rows])),
        reward_per_request=float(np.mean([r["_reward"] for r in rows])),
        exploration_rate=float(explored.mean()),
        action_names=list(rows[0]["fusion"]["names"]),
        action_std=actions.std(axis=0).tolist() if actions.size else [],
        smallest_log_propensities=np.sort(log_mu)[:5].tolist(),
        ess=effective_sample_size(log_mu),
        explored=int(explored.sum()),
        actions=actions,
        log_propensities=log_mu,
    )


def write_report(lake: Path, out: Path, config: JoinConfig, now: float | None = None) -> Path:
    """Render the report into `out` (report.md and its PNGs); returns the Markdown file."""
    now = time.time() if now is None else now
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(lake, config, now)
    page = out / "report.md"
    lines = [
        "# Decision log report",
        "",
        f"Lake `{lake}`; decisions whose reward window ({config.window_seconds:g} s, rule `{config.rule}`, default "
        f"reward {config.default_reward:g}) closed by {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}.",
        "",
    ]
    if not summaries:
        page.write_text("\n".join([*lines, "No closed decisions in the lake yet.", ""]))
        return page
    lines += [
        "| policy | version | arm | decisions | join rate | reward / request | explored | action std (mean) "
        "| smallest log μ (explored) | ESS of 1/μ (explored) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in summaries:
        smallest = ", ".join(f"{v:.2f}" for v in s.smallest_log_propensities) or "–"
        spread = f"{float(np.mean(s.action_std)):.3f}" if s.action_std else "–"
        lines.append(
            f"| {s.policy} | {s.version} | {s.arm} | {s.decisions} | {s.join_rate:.1%} | {s.reward_per_request:.4f} "
            f"| {s.exploration_rate:.1%} | {spread} | {smallest} | {s.ess:.1f} of {s.explored} |"
        )
    lines += ["", "Action spread per dimension (standard deviation of the logged fusion action):", ""]
    names = summaries[0].action_names
    lines += [f"| policy / version / arm | {' | '.join(names)} |", "|---|" + "---:|" * len(names)]
    for s in summaries:
        lines.append(f"| {s.policy} / {s.version} / {s.arm} | " + " | ".join(f"{v:.3f}" for v in s.action_std) + " |")
    lines += ["", _plot_rates(summaries, out / "rates.png"), "", _plot_actions(summaries, out / "actions.png"), ""]
    lines += [_plot_propensities(summaries, out / "propensities.png"), ""]
    page.write_text("\n".join(lines))
    return page


def _label(s: ArmSummary) -> str:
    return f"{s.version}\n{s.arm}"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_rates(summaries: list[ArmSummary], path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    labels = [_label(s) for s in summaries]
    for ax, values, title in (
        (axes[0], [s.reward_per_request for s in summaries], "reward per request"),
        (axes[1], [s.join_rate for s in summaries], "join rate"),
        (axes[2], [s.exploration_rate for s in summaries], "exploration rate"),
    ):
        ax.bar(range(len(values)), values)
        ax.set_xticks(range(len(values)), labels, fontsize=6)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![reward, join and exploration rate per version and arm]({path.name})"


def _plot_actions(summaries: list[ArmSummary], path: Path) -> str:
    plt = _plt()
    names = summaries[0].action_names
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names) + 1, 3.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        data = [s.actions[:, j] if s.actions.shape[1] > j else np.zeros(0) for s in summaries]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(summaries) + 1), [_label(s) for s in summaries], fontsize=6)
        ax.set_title(name, fontsize=9)
    fig.suptitle("logged fusion actions", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![spread of the logged actions per dimension]({path.name})"


def _plot_propensities(summaries: list[ArmSummary], path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for s in summaries:
        if s.log_propensities.size:
            ax.hist(s.log_propensities, bins=30, histtype="step", label=f"{s.version} / {s.arm}")
    ax.set_xlabel("log μ(a|s) of explored decisions")
    ax.set_ylabel("decisions")
    if any(s.log_propensities.size for s in summaries):
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![logged propensities]({path.name})"
