"""The loop's section of RESULTS.md and its plot, rendered from `cascade loop` run folders
(runs/loop/seed-*/loop.json); no number is typed in. The section sits between two markers (`loop` by
default; one per world, e.g. `loop:v21`), so re-rendering replaces it and the rest is left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.reports.stats import Paired

SECTION = "loop"


def markers(section: str = SECTION) -> tuple[str, str]:
    return f"<!-- {section}:start -->", f"<!-- {section}:end -->"


START, END = markers()


def plot_name(section: str = SECTION) -> str:
    """loop.png for the default section, e.g. loop-v21.png for `loop:v21`."""
    return "loop.png" if section == SECTION else f"{section.replace(':', '-')}.png"


def _mean_std(values: list[float]) -> str:
    array = np.asarray(values, dtype=np.float64)
    return f"{array.mean():.2f} ± {array.std(ddof=1) if len(array) > 1 else 0.0:.2f}"


def _gates(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r["gate"] for s in sorted(runs) for r in runs[s] if r.get("gate")]


_REPLAY = "models.algorithms.replay_trainer"
_RECALIBRATED = " (recalibrated)"


def _describe(runs: dict[int, list[dict[str, Any]]]) -> tuple[str, str, str]:
    """(trainer, estimator, margin) as the runs' verdicts and candidates' manifests record them."""
    gates = _gates(runs)
    estimators = sorted({str(g.get("estimator", "snips")) for g in gates}) or ["snips"]
    margins = sorted({float(g.get("margin", 0.0)) for g in gates}) or [0.0]
    trainers = sorted({str(g.get("trainer", "models.algorithms.logged_a3c")) for g in gates}) or [
        "models.algorithms.logged_a3c"
    ]
    if any(g.get("trainer_recalibrated") for g in gates):
        trainers = [f"{t}{_RECALIBRATED}" if t == _REPLAY else t for t in trainers]
    # DR's reward model, when the gate recalibrated it (its verdict then records the fit)
    calibrated = any(isinstance(g.get("reward_model"), dict) and "ridge" in g["reward_model"] for g in gates)
    names = [
        e.upper() + (" (its reward model recalibrated on the training users)" if calibrated else "") for e in estimators
    ]
    margin = " / ".join(f"{100 * m:g}%" for m in margins)
    return " / ".join(trainers), " / ".join(names), margin


def _replay_text(reward_model: str) -> str:
    return (
        "REINFORCE on the replayed logged requests, reward model = the business-weighted MTL predictions of what "
        f"the replay serves{reward_model}, KL trust region around the active version "
        "(models/algorithms/replay_trainer.py)"
    )


_TRAINERS = {
    _REPLAY: _replay_text(""),
    _REPLAY + _RECALIBRATED: _replay_text(
        ", recalibrated per state on the training users' logged rewards once per round "
        "(models/algorithms/reward_calibration.py)"
    ),
    "models.algorithms.logged_a3c": "clipped A3C on the logged rewards (models/algorithms/logged_a3c.py)",
}


def render_section(
    runs: dict[int, list[dict[str, Any]]], command: str, seconds: float, machine: str, section: str = SECTION
) -> str:
    """Markdown of the loop's results over seeds: true return per phase, lift, the gate's verdicts, and in a
    session world the session return of the version serving each phase."""
    start, end = markers(section)
    seeds = sorted(runs)
    phases = min(len(runs[s]) for s in seeds)
    returns = {s: [float(r["phase"]["true_return"]) for r in runs[s][:phases]] for s in seeds}
    trainer, estimator, margin = _describe(runs)
    explored = [
        float(r["phase"]["explored"]) / float(r["phase"]["requests"])
        for s in seeds
        for r in runs[s]
        if r["phase"].get("explored") is not None and r["phase"].get("requests")
    ]
    share = f"{100 * np.mean(explored):.0f}%" if explored else "a share"
    lines = [
        start,
        "## The closed loop: `cascade loop` from a fresh demo store",
        "",
        f"Command: `{command}`. Wall time {seconds / 60:.1f} min for {len(seeds)} seeds on {machine}.",
        "",
        f"Each seed trains its own demo policy (exploring on {share} of requests), serves it over HTTP, and runs",
        "iterations of: simulated users rank and send per-item feedback → consumer groups read both streams →",
        "rewards joined in the window (sum) → training warm-started from the active bundle: "
        + "; ".join(_TRAINERS.get(t, t) for t in trainer.split(" / "))
        + f" → OPE gate ({estimator} on held-out users' explored decisions; the 95% lower bound of the paired",
        f"difference candidate − active must exceed {margin} of the active's value)",
        "→ publish + hot swap only if the gate passes. Phase i is served",
        "by the version active after i rounds; every phase replays the same simulated requests (common random",
        "numbers), so differences between phases are the policy's. True return = the simulator's expected",
        "request reward of what was served (mean over the phase's requests).",
        "",
        "| phase | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std over seeds |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for i in range(phases):
        row = [returns[s][i] for s in seeds]
        lines.append(f"| {i} | " + " | ".join(f"{v:.2f}" for v in row) + f" | {_mean_std(row)} |")
    lifts = [returns[s][-1] - returns[s][0] for s in seeds]
    lines.append("| lift (last − first) | " + " | ".join(f"{v:+.2f}" for v in lifts) + f" | {_mean_std(lifts)} |")
    lines += _session_table(runs, seeds, phases)
    lines += [
        "",
        f"Gate verdicts (candidate vs active, {estimator} on held-out explored decisions; lower bound = 95% bound of",
        "the paired difference), beside the simulator's true value of both as exploring Gaussians (never shown to",
        "the gate):",
        "",
    ]
    sessions = any("session_return" in g.get("simulated_truth", {}).get("active", {}) for g in _gates(runs))
    lines += [
        "| seed | round | verdict | OPE active | OPE candidate | diff. lower bound | cand. ESS | held-out "
        "| true active | true cand. |" + (" session active | session cand. |" if sessions else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if sessions else ""),
    ]
    for s in seeds:
        for r in runs[s]:
            gate = r.get("gate")
            if not gate:
                continue
            active, candidate = gate["active"], gate["candidate"]
            truth = gate.get("simulated_truth", {})
            true_active = truth.get("active", {}).get("gaussian", float("nan"))
            true_candidate = truth.get("candidate", {}).get("gaussian", float("nan"))
            lower = float(gate.get("difference_lower_bound", float("nan")))
            line = (
                f"| {s} | {r['iteration']} | {gate['gate']} | {active['value']:.1f} ± {active['stderr']:.1f} | "
                f"{candidate['value']:.1f} ± {candidate['stderr']:.1f} | {lower:+.2f} | {candidate['ess']:.0f} | "
                f"{gate['held_out']} | {true_active:.2f} | {true_candidate:.2f} |"
            )
            if sessions:
                session_active = truth.get("active", {}).get("session_return", float("nan"))
                session_candidate = truth.get("candidate", {}).get("session_return", float("nan"))
                line += f" {session_active:.2f} | {session_candidate:.2f} |"
            lines.append(line)
    promoted = {s: sum(bool(r.get("published")) for r in runs[s]) for s in seeds}
    lines += ["", "Promotions per seed: " + ", ".join(f"seed {s}: {n}" for s, n in promoted.items()) + ".", ""]
    lines += _reading(runs, seeds, promoted, lifts)
    lines += [f"![true return per phase]({plot_name(section)})", "", end, ""]
    return "\n".join(lines)


def _session_table(runs: dict[int, list[dict[str, Any]]], seeds: list[int], phases: int) -> list[str]:
    """Session return of the version serving each phase, when every phase recorded one (session worlds)."""
    if not all("session_return" in r["phase"] for s in seeds for r in runs[s][:phases]):
        return []
    values = {s: [float(r["phase"]["session_return"]) for r in runs[s][:phases]] for s in seeds}
    lines = [
        "",
        "Session return (Σ business-weighted reward over a session) of the version serving each phase, at its",
        "mean action on the demo's held-out users in the demo's session setting (its manifest's",
        "`evaluation.session_return`): the objective the demo was trained on, which the per-request trainer",
        "and gate never see.",
        "",
        "| phase | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std over seeds |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for i in range(phases):
        row = [values[s][i] for s in seeds]
        lines.append(f"| {i} | " + " | ".join(f"{v:.2f}" for v in row) + f" | {_mean_std(row)} |")
    lift = Paired(np.array([values[s][-1] for s in seeds]), np.array([values[s][0] for s in seeds]))
    lo, hi = lift.interval
    lines += [
        "| lift (last − first) | " + " | ".join(f"{values[s][-1] - values[s][0]:+.2f}" for s in seeds) + " | "
        f"{lift.mean:+.2f} [{lo:+.2f}, {hi:+.2f}] (95 % t interval) |",
        "",
        f"Session return, last phase − first: {lift.mean:+.2f} ({lift.relative:+.1%}; 95 % CI [{lo:+.2f}, {hi:+.2f}], "
        f"{lift.wins}/{lift.n} seeds higher, verdict for a lift: {lift.verdict()}).",
    ]
    return lines


def _reading(
    runs: dict[int, list[dict[str, Any]]], seeds: list[int], promoted: dict[int, int], lifts: list[float]
) -> list[str]:
    """What the numbers say, computed from them."""
    gains: dict[str, list[float]] = {"publish": [], "refuse": []}
    noise = []
    for gate in _gates(runs):
        truth = gate.get("simulated_truth")
        if truth:
            active = truth["active"]["gaussian"]
            gains[gate["gate"]].append(100 * (truth["candidate"]["gaussian"] - active) / active)
            noise.append(100 * gate["candidate"]["stderr"] / abs(gate["active"]["value"]))
    lift = np.asarray(lifts)
    spread = lift.std(ddof=1) if len(lift) > 1 else 0.0
    text = [f"Reading: {sum(promoted.values())} promotions over {len(seeds)} seeds."]
    for verdict, values in gains.items():
        if values:
            text.append(
                f"The {len(values)} {'promoted' if verdict == 'publish' else 'refused'} candidates' true gain over "
                f"the active version was {min(values):+.2f}% to {max(values):+.2f}% (simulator, exploring)."
            )
    if noise:
        text.append(
            f"The OPE standard error of a candidate's value was {min(noise):.1f}–{max(noise):.1f}% of the value."
        )
    if sum(promoted.values()) == 0:
        text.append(
            f"The lift of the last phase over the first ({lift.mean():+.2f} ± {spread:.2f}) is then the phase-to-phase "
            "spread of exploration noise on the same requests, not learning: the loop does not lift the demo policy "
            "at these sizes."
        )
    else:
        text.append(
            f"The lift of the last phase over the first is {lift.mean():+.2f} ± {spread:.2f} (mean ± std over seeds)."
        )
    return ["", " ".join(text), ""]


def read_runs(root: Path) -> dict[int, list[dict[str, Any]]]:
    """loop.json of every seed folder under `root` (seed-<n>/loop.json)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for path in sorted(root.glob("seed-*/loop.json")):
        reports = json.loads(path.read_text())
        for report in reports:  # the trainer, from the candidate's manifest (loop.json has the verdict only)
            manifest = path.parent / "bundles" / str(report.get("candidate")) / "manifest.json"
            if report.get("gate") and manifest.exists():
                training = json.loads(manifest.read_text())["training"]
                report["gate"]["trainer"] = training.get("trainer")
                report["gate"]["trainer_recalibrated"] = bool(training.get("recalibrate", False))
        out[int(path.parent.name.removeprefix("seed-"))] = reports
    if len(out) < 3:
        raise ValueError(f"need at least 3 seeds under {root}, found {sorted(out)}")
    return out


def write_section(results: Path, markdown: str, section: str = SECTION) -> None:
    """Replace the loop section named `section` of RESULTS.md (or append it)."""
    start, end = markers(section)
    text = results.read_text() if results.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + markdown.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + markdown
    results.write_text(text)


def plot(runs: dict[int, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for seed, reports in sorted(runs.items()):
        ys = [r["phase"]["true_return"] for r in reports]
        errs = [r["phase"]["true_return_stderr"] for r in reports]
        ax.errorbar(range(len(ys)), ys, yerr=errs, marker="o", capsize=3, label=f"seed {seed}")
    ax.set_xlabel("phase (after i loop rounds)")
    ax.set_ylabel("true simulated return per request")
    ax.set_title("cascade loop: true return per phase", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_loop_results(
    root: Path, results: Path, command: str, seconds: float, machine: str, section: str = SECTION
) -> Path:
    """Render the runs under `root` into `section` of `results`; the plot lands beside it (`plot_name`)."""
    runs = read_runs(root)
    write_section(results, render_section(runs, command, seconds, machine, section), section)
    plot(runs, results.with_name(plot_name(section)))
    return results
