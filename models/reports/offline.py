"""RESULTS.md sections of the offline experiments (OPE validation, ResAct, EnhancedRL), rendered from the runs' JSON.

Each section sits between its own markers, so a rerun replaces only its section and keeps the rest of
the file (the seeds experiment's tables included). No number is typed in.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import numpy.typing as npt

from models.reports.stats import Paired


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, load average {load:.1f} at the end of the run"


def _fmt(values: npt.ArrayLike, digits: int = 1) -> str:
    array = np.asarray(values, dtype=np.float64)
    spread = array.std(ddof=1) if len(array) > 1 else float("nan")
    return f"{array.mean():.{digits}f} ± {spread:.{digits}f}"


def _header(title: str, record: dict[str, Any], command: str, scaled: str) -> list[str]:
    seeds = sorted(int(s) for s in record["per_seed"])
    cpu = f", {record['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in record else ""
    world = record.get("world", "v1")  # a record written before the CLI kept its world: no suffix
    return [
        f"## {title}" + (f" (simulator {world})" if world != "v1" else ""),
        "",
        f"Command: `{command}` ({record['seconds'] / 60:.1f} min wall time{cpu} for seeds {seeds}; "
        f"{record['machine']}; 1 torch thread).",
        "",
        f"Scaled down: {scaled}",
        "",
    ]


def ope_section(record: dict[str, Any], command: str) -> str:
    from models.experiments.ope_validation import ESTIMATOR_NAMES

    per_seed = record["per_seed"]
    cfg = record["config"]
    off = cfg["offline"]
    lines = _header(
        "Off-policy evaluation against the simulator's truth",
        record,
        command,
        f"one log per seed of {off['sessions']} sessions × {off['log_steps']} requests "
        f"({off['sessions'] * off['log_steps']} logged decisions), pools of {off['n_candidates']}, k = {off['k']}, "
        f"truth from {cfg['eval_users']} fixed users per policy.",
    )
    lines += [
        "Behaviour: the Gaussian logging policy of models/env/offline_data.py (σ = "
        f"{off['behaviour_std_fraction']} of each action's range). Targets: the same Gaussian with its mean shifted by "
        'δ·range along a direction found by a short cross-entropy search ("better") or against it ("worse"). '
        "Estimand: the mean request reward in the log's own process; truth: the target run on-policy in the "
        "simulator that way (refilled sessions for the logging window, expected responses, fixed users); "
        "`cohort` beside it: the same target for a fresh cohort followed to the end of its sessions (not what "
        "a per-request estimator on this log estimates). Estimators see only the log (sampled rewards, logged "
        "propensities); "
        f"NCIS per logged session, cap {cfg['ncis_cap']}; DR with an MLP reward model fitted on the log.",
        "",
        "| policy | truth | cohort | IPS | SNIPS | NCIS | DR | ESS of the weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    policies = list(next(iter(per_seed.values())))
    for policy in policies:
        cohort = [per_seed[s][policy].get("cohort_truth", float("nan")) for s in per_seed]
        row = [policy, _fmt([per_seed[s][policy]["truth"] for s in per_seed], 2), _fmt(cohort, 2)]
        row += [_fmt([per_seed[s][policy][n] for s in per_seed], 2) for n in ESTIMATOR_NAMES]
        row.append(_fmt([per_seed[s][policy]["ess"] for s in per_seed], 0))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "Per estimator, over all policies and seeds: bias = mean(estimate − truth); spread = std of the per-seed "
        "bias over seeds and std of the errors; rank correlation = Spearman's ρ between estimates and truths of "
        "the policies, per seed, mean ± std over seeds.",
        "",
        "| estimator | bias | bias std over seeds | error std | mean abs error | Spearman ρ |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in record["summary"].items():
        lines.append(
            f"| {name} | {s['bias']:.2f} | {s['bias_std_over_seeds']:.2f} | {s['error_std']:.2f} | {s['mae']:.2f} "
            f"| {s['spearman']:.2f} ± {s['spearman_std']:.2f} |"
        )
    lines += ["", _on_policy_check(per_seed)]
    return "\n".join(lines)


def _on_policy_check(per_seed: dict[str, Any]) -> str:
    """The behaviour's own IPS (every weight 1: the mean logged reward) against its truth. Estimators are
    only comparable with the truth where that gap is small; a large one is a difference of estimands."""
    ips = np.array([per_seed[s]["behaviour"]["ips"] for s in per_seed], dtype=np.float64)
    truth = np.array([per_seed[s]["behaviour"]["truth"] for s in per_seed], dtype=np.float64)
    p = Paired(ips, truth)
    lo, hi = p.interval
    text = (
        f"On-policy check: the behaviour's IPS (weights 1, i.e. the mean logged reward) minus its truth is "
        f"{p.mean:+.2f} ({p.relative:+.1%}; 95 % CI [{lo:+.2f}, {hi:+.2f}], {p.n} seeds)."
    )
    if p.verdict(1) == "not shown":
        return text + (
            f" No gap between the log and the truth is shown at {p.n} seeds, so the biases above are taken as the "
            "estimators' own."
        )
    return text + (
        " The log and the truth disagree on the behaviour itself, where every estimator is exact in "
        "expectation: the truth does not measure what the log does (its estimand), and every bias above "
        "includes that gap; the rank correlations compare policies within one estimand and remain the "
        "estimators' own."
    )


def _paired(per_seed: dict[str, Any], a: str, b: str, metric: str, digits: int = 1) -> str:
    x = np.array([per_seed[s][a][metric] for s in per_seed])
    y = np.array([per_seed[s][b][metric] for s in per_seed])
    p = Paired(x, y)
    lo, hi = p.interval
    return (
        f"| {a} vs {b} | {metric} | {_fmt(x, digits)} | {_fmt(y, digits)} | {p.mean:+.{digits}f} "
        f"[{lo:+.{digits}f}, {hi:+.{digits}f}] (MDE {p.mde:.{digits}f}) | {p.wins}/{p.n} | {p.verdict(1)} |"
    )


_PAIRED_HEADER = [
    "| comparison | metric | first | second | paired difference [95 % t CI] | seeds first wins | verdict |",
    "|---|---|---|---|---|---|---|",
]


def resact_section(record: dict[str, Any], command: str) -> str:
    per_seed = record["per_seed"]
    cfg = record["config"]
    off, res = cfg["offline"], cfg["resact"]
    lines = _header(
        "ResAct vs offline baselines on a logged behaviour policy (seed 004)",
        record,
        command,
        f"a log of {off['sessions'] * off['log_steps']} requests per seed; {res['steps']} updates of batch "
        f"{res['batch']} per method; n = {res['n_draws']} latent draws; pools of {off['n_candidates']}, "
        "fusion-only serving (no stage selection); γ = "
        f"{res['gamma']}; no mutual-information losses on the session-level state.",
    )
    lines += [
        "Every method trains offline on the same log; the behaviour policy is the logged Gaussian itself. "
        f"True: the policy served on {cfg['eval_users']} fixed users to the end of their sessions (expected "
        "responses). NCIS: the mean request reward estimated from the log alone (per logged session, cap "
        f"{cfg['ncis_cap']}), a deterministic policy taken as N(π(s), σ_b²). As in seed 004's tables, true "
        "value and NCIS side by side; the truth's per-request reward is the quantity NCIS estimates.",
        "",
        "| method | true return (Σ reward per session) | true depth | true reward per request | NCIS reward per "
        "request | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    methods = list(next(iter(per_seed.values())))
    for m in methods:
        v = {k: np.array([per_seed[s][m][k] for s in per_seed]) for k in ("return", "depth", "per_request", "ncis")}
        secs = np.mean([per_seed[s][m]["seconds"] for s in per_seed])
        lines.append(
            f"| {m} | {_fmt(v['return'])} | {_fmt(v['depth'], 2)} | {_fmt(v['per_request'], 2)} "
            f"| {_fmt(v['ncis'], 2)} | {secs:.0f} |"
        )
    lines += ["", *_PAIRED_HEADER]
    for other in ("behaviour", "bc", "bcq", "td3_bc"):
        lines.append(_paired(per_seed, "resact", other, "return"))
    for other in ("behaviour", "bc", "bcq", "td3_bc"):
        lines.append(_paired(per_seed, "resact", other, "ncis", 2))
    rec = [
        (per_seed[s]["resact"]["reconstruction_first"], per_seed[s]["resact"]["reconstruction_last"]) for s in per_seed
    ]
    first, last = np.array(rec).T
    lines += [
        "",
        f"ResAct's CVAE reconstruction loss (range units, first → last 50 updates): {_fmt(first, 3)} → "
        f"{_fmt(last, 3)}; the BCQ-style decoder, trained on reconstruction only: "
        f"{_fmt(np.array([per_seed[s]['bcq']['reconstruction_first'] for s in per_seed]), 3)} → "
        f"{_fmt(np.array([per_seed[s]['bcq']['reconstruction_last'] for s in per_seed]), 3)}.",
    ]
    return "\n".join(lines)


def enhanced_section(record: dict[str, Any], command: str) -> str:
    per_seed = record["per_seed"]
    cfg = record["config"]
    e = cfg["enhanced"]
    off = e["offline"]
    lines = _header(
        "EnhancedRL (per user-item fusion) vs the user-level fusion actor (seed 003)",
        record,
        command,
        f"{e['steps']} steps × {e['sessions']} concurrent sessions of online training per method "
        f"({e['steps'] * e['sessions']} requests); q = {e['q_sets']} × m = {e['m_critics']} critics of 64 units; "
        f"pools of {off['n_candidates']}, fusion-only serving; γ = {e['gamma']}.",
    )
    lines += [
        "Both learn online on the same simulated sessions with the same request budget and start at the middle "
        "of the action box; the user-level actor is models/algorithms/a3c.py (A3C, one weight vector per request), "
        "EnhancedRL outputs one per candidate. True return on "
        f"{cfg['eval_users']} fixed users, served at the mean; uniform weights as the floor.",
        "",
        "| method | true return | depth | reward per request | train time (s) |",
        "|---|---|---|---|---|",
    ]
    for m in next(iter(per_seed.values())):
        v = {k: np.array([per_seed[s][m][k] for s in per_seed]) for k in ("return", "depth", "per_request")}
        secs = np.mean([per_seed[s][m].get("seconds", 0.0) for s in per_seed])
        lines.append(
            f"| {m} | {_fmt(v['return'])} | {_fmt(v['depth'], 2)} | {_fmt(v['per_request'], 2)} | {secs:.0f} |"
        )
    lines += [
        "",
        *_PAIRED_HEADER,
        _paired(per_seed, "enhanced_rl", "user_level_a3c", "return"),
        _paired(per_seed, "enhanced_rl", "uniform", "return"),
        _paired(per_seed, "user_level_a3c", "uniform", "return"),
    ]
    return "\n".join(lines)
