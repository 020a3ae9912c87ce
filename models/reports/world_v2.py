"""RESULTS.md (and results.png) from a `cascade experiment v2` run: every number and every sentence of
the interpretation is computed from `<runs>/all.json`; nothing is typed in."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.reports.sections import keep_sections
from models.reports.stats import Paired, describe, format_seeds, t_quantiles
from models.reports.training_noise import gradient_cv, signal_std
from models.sim.world import SPARSE_V2

BASELINES = ("uniform", "cem_immediate", "cem_session", "grid_one", "grid_groups")
METRICS = (
    ("return", "return (Σ weighted reward)", 1),
    ("depth", "depth (requests)", 2),
    ("watch_time", "watch (min)", 1),
    ("like", "likes", 3),
    ("follow", "follows", 4),
    ("next_day_return", "next-day return", 4),
    ("reward_per_request", "reward / request", 3),
    ("constraints_met", "sparse constraints met (of 4)", 1),
)


@dataclass(frozen=True)
class Comparison:
    first: str
    second: str
    metric: str
    sign: int  # the paper's direction: +1 first above second, −1 below
    paper: str  # what the paper claims
    missing: str  # if it does not hold: the mechanism we believe the world (or the method) lacks
    # The same, for a world whose stages' heads learn errors of their own (v2.2), where it differs.
    missing_with_stage_bias: str = ""


HEADROOM = Comparison(
    "grid_groups",
    "grid_one",
    "return",
    1,
    "the world's headroom (no RL): one constant per observable group over one constant",
    "—",
)
CONTEXTUAL = Comparison(
    "contextual_cem",
    "cem_session",
    "return",
    1,
    "not a paper claim: one constant per activity segment, searched on the session return from the best "
    "constant, beats the best constant (Kuaishou's CEM without its 'lack of personalization')",
    "the segments' best actions differ by less than the search resolves with its users per segment",
)
DEMO = Comparison(
    "demo_a3c",
    "cem_session",
    "return",
    1,
    "the demo (A3C γ = 0.95 on E[r | s, a], twice the updates) beats the best constant on session return",
    "a state-dependent action can only beat one constant by the headroom above, and the per-request "
    "policy gradient's noise (the leave draw's terminal value in every TD error) hides what is there",
)
COMPARISONS = (
    DEMO,
    HEADROOM,
    CONTEXTUAL,
    Comparison(
        "contextual_a3c",
        "contextual_cem",
        "return",
        1,
        "not a paper claim: the session A3C started from the searched table improves on the table",
        "the policy gradient's noise (the leave draw's terminal value in every TD error) is larger than what is "
        "left above the table within the budget",
    ),
    Comparison(
        "contextual_a3c",
        "cem_session",
        "return",
        1,
        "Kuaishou RL talk (seed paper 001): RL beats the hand-tuned constant (CEM) on long-term metrics, here "
        "from a start that already uses the segments",
        "as above",
    ),
    Comparison(
        "demo_a3c",
        "a3c_gamma_0.95",
        "return",
        1,
        "not a paper claim: what the demo's recipe (E[r | s, a], twice the updates) adds to A3C γ = 0.95",
        "—",
    ),
    Comparison(
        "a3c_gamma_0.95",
        "cem_session",
        "return",
        1,
        "Kuaishou RL talk (seed paper 001): RL beats the hand-tuned constant (CEM) on long-term metrics",
        "a state-dependent action adds value only where the best action differs across observable states; "
        "the exposure of that heterogeneity (ζ_u, segment) through the fusion of five predictions is weak",
    ),
    Comparison(
        "a3c_gamma_0.95",
        "a3c_gamma_0",
        "return",
        1,
        "Kuaishou RL talk (seed paper 001): γ = 0.95 beats the contextual bandit γ = 0",
        "the delayed effects (patience from follows and quality, satiation) must be large next to the "
        "immediate reward's noise within the training budget",
    ),
    Comparison(
        "a3c_gamma_0",
        "cem_immediate",
        "reward_per_request",
        1,
        "Kuaishou RL talk (seed paper 001): a learned (personalised) bandit beats one constant on the immediate reward",
        "per-user differences in the immediate response are mostly rate shifts, which the log-power fusion "
        "absorbs (a constant factor on p_j shifts every item's score alike)",
    ),
    Comparison(
        "cem_session",
        "cem_immediate",
        "return",
        1,
        "not a paper claim: how much of 'RL vs CEM' the objective alone explains",
        "—",
    ),
    Comparison(
        "multi_critic",
        "a3c_gamma_0.95",
        "return",
        1,
        "Kuaishou RL talk (seed paper 001): one critic per objective (sparse γ = 0.5) improves on one critic",
        "the sparse critics' γ = 0.5 discounts exactly the long-term effect of follows this world has",
    ),
    Comparison(
        "multi_critic",
        "a3c_gamma_0.95",
        "follow",
        1,
        "Kuaishou RL talk (seed paper 001): the multi-critic raises the sparse objectives",
        "as above",
    ),
    Comparison(
        "a3c_srs",
        "a3c_gamma_0.95",
        "return",
        1,
        "SRS (seed paper 002): SRS (reward replaced by its estimate) improves return",
        "the policy-gradient noise is dominated by exploration and the leave draws, not by the reward noise",
    ),
    Comparison(
        "a3c_srs2",
        "a3c_gamma_0.95",
        "return",
        1,
        "SRS (seed paper 002): SRS2 (shared embedding) improves return",
        "the actor reads dense features; there is no representation-learning bottleneck for sharing to fix",
    ),
    Comparison(
        "a3c_srs",
        "a3c_gamma_0.95",
        "signal_std",
        -1,
        "SRS (seed paper 002): the estimated reward lowers the variance of the critic's training signal",
        "the estimator regresses on the same sparse responses, so its output keeps their spread",
    ),
    Comparison(
        "a3c_srs",
        "a3c_gamma_0.95",
        "grad_cv",
        -1,
        "SRS (seed paper 002): a steadier training signal lowers the policy gradient's variance",
        "the policy-gradient noise is dominated by exploration and the leave draws, not by the reward noise",
    ),
    Comparison(
        "a3c_srs2",
        "a3c_gamma_0.95",
        "grad_cv",
        -1,
        "SRS (seed paper 002): SRS2 lowers the policy gradient's variance",
        "as above",
    ),
    Comparison(
        "a3c_rnd",
        "a3c_gamma_0.95",
        "return",
        1,
        "Kuaishou RL talk (seed paper 001): the RND bonus improves return",
        "novelty (cold-start users, drifting interests) is a small share of the states at this budget",
    ),
    Comparison(
        "two_stage",
        "lagrangian_a3c",
        "watch_time",
        1,
        "Kuaishou RL talk (seed paper 001): two-stage constrained actor-critic beats the Lagrangian on the main "
        "objective (watch time)",
        "the auxiliary policies' KL constraints pull towards actions that trade watch time for sparse responses, "
        "and the sparse responses' own critics see a reward that is almost always 0",
    ),
    Comparison(
        "two_stage",
        "lagrangian_a3c",
        "constraints_met",
        1,
        "Kuaishou RL talk (seed paper 001): two-stage keeps the auxiliary responses' constraints better",
        "as above",
    ),
    Comparison(
        "unex_rl",
        "independent_stages",
        "return",
        1,
        "UNEX-RL (seed paper 000): joint stage actors (global critic, CIC) beat independent stage learners",
        "the stages' own heads agree (no simulator-side per-stage bias or noise), so there is little for "
        "cooperation between the stages to fix",
        "the stages' heads order a request's candidates barely better than chance (RESULTS.md `sim:stages`), so "
        "what re-weighting them can win is small next to how much the learned stage rows vary from seed to seed",
    ),
    Comparison(
        "unex_rl",
        "uniform",
        "return",
        1,
        "UNEX-RL (seed paper 000): learned stage actors improve on the cascade they start from",
        "as above",
    ),
    Comparison(
        "unex_rl",
        "cem_stages",
        "return",
        1,
        "UNEX-RL (seed paper 000), against the honest baseline: learned stage actors beat the best constant "
        "stage weights",
        "as above",
    ),
    Comparison(
        "unex_rl",
        "unex_rl_ce",
        "return",
        1,
        "UNEX-RL (seed paper 000): stopping the gradient at the downstream observations (SG) makes a better "
        "update than following the cascading effect through them",
        "—",
    ),
    Comparison(
        "cem_stages",
        "uniform",
        "return",
        1,
        "the stages' headroom (no RL): the best constant stage weights over the starting ones",
        "—",
    ),
)


# Metrics read from a (method, seed)'s training log rather than from its evaluation (SRS's claims).
TRAINING_NOISE = {"signal_std": signal_std, "grad_cv": gradient_cv}


def _values(per_seed: dict[str, Any], method: str, metric: str) -> np.ndarray:
    if metric in TRAINING_NOISE:
        of_log = TRAINING_NOISE[metric]
        return np.array([of_log(per_seed[s][method].get("log")) for s in per_seed], dtype=np.float64)
    return np.array([per_seed[s][method]["metrics"].get(metric, np.nan) for s in per_seed], dtype=np.float64)


def _cell(values: np.ndarray, digits: int) -> str:
    """mean ± t-based 95 % half-width over seeds."""
    if np.isnan(values).any() or values.size < 2:
        return "—"
    t, _ = t_quantiles(values.size - 1)
    half = t * values.std(ddof=1) / np.sqrt(values.size)
    return f"{values.mean():.{digits}f} ± {half:.{digits}f}"


def _present(per_seed: dict[str, Any], *methods: str) -> bool:
    return all(all(m in per_seed[s] for s in per_seed) for m in methods)


def write_results(record: dict[str, Any], path: Path, command: str) -> Path:
    previous = path.read_text() if path.exists() else ""
    per_seed: dict[str, Any] = record["per_seed"]
    seeds = [int(s) for s in per_seed]
    methods = [m for m in record["config"]["methods"] if _present(per_seed, m)]
    cfg = record["config"]
    run = cfg["run"]
    n = len(seeds)
    lines = [
        f"# Results: the seed methods and their baselines in simulator {_world_name(cfg)}",
        "",
        _provenance(record, command, " (models/experiments/world_v2.py → models/reports/world_v2.py)")
        + f" Seeds: {format_seeds(seeds)} ({n} worlds). The world is simulator {_world_name(cfg)} (SIMULATOR.md; "
        "its parameters were committed before any method ran on it).",
        "",
        f"Budget, the same for every learned method: {run['steps']} updates × {run['sessions']} concurrent "
        f"sessions; pools of {run['n_candidates']} candidates, stages keep {tuple(run['stage_sizes'])}, "
        f"k = {run['k']} (KuaiRand's list size); sessions end by the patience model or at "
        f"{run['session']['max_depth']} requests. Training reward: {run['reward']} responses. Evaluation: the served "
        f"means on {cfg['eval_users']} fixed users per seed (seed 10000 + world seed, never used in training or by "
        "CEM), followed to the end of their sessions, objectives from expected responses, common random numbers "
        "across methods. Every (method, seed) has its own random stream. Cells: mean ± t-based 95 % half-width "
        "over seeds.",
        *_scope_lines(cfg),
        "",
    ]
    lines += results_body(per_seed, methods, "##", stage_biased(cfg))
    lines += [
        "![results](results.png)",
        "",
        "The sections below the configuration were produced by their own commands, each named in its section "
        "with the simulator (`--world`) it ran in.",
        "",
        "## Configuration",
        "",
        "```",
        json.dumps(cfg, indent=1),
        "```",
        "",
    ]
    path.write_text("\n".join(lines))
    keep_sections(path, previous)
    _plot(per_seed, methods, path.with_name("results.png"))
    return path


def _world_name(cfg: dict[str, Any]) -> str:
    return str(cfg.get("world_name", "v2"))  # runs from before v2.1 existed carry no name: they are v2's


def _gain_rows(per_seed: dict[str, Any], methods: list[str], level: str) -> list[str]:
    """Each method's gain over the best constant and over uniform weights; nothing when a run has not both."""
    if not _present(per_seed, "cem_session", "uniform"):
        return []
    n = len(per_seed)
    lines = [
        "",
        f"{level} Gain over the baselines (return, paired over seeds)",
        "",
        "Each method's paired difference in session return over the best constant action found by CEM on the "
        "session return (`cem_session`) and over uniform weights; 95 % t interval and the minimum detectable "
        f"effect (MDE: the true difference a 5 % two-sided paired t test finds with 80 % power at {n} seeds).",
        "",
        "| method | − cem_session | 95 % CI | MDE | − uniform | 95 % CI | seeds above cem_session |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        if m == "cem_session":
            continue
        a = Paired(_values(per_seed, m, "return"), _values(per_seed, "cem_session", "return"))
        b = Paired(_values(per_seed, m, "return"), _values(per_seed, "uniform", "return"))
        (alo, ahi), (blo, bhi) = a.interval, b.interval
        lines.append(
            f"| {m} | {a.mean:+.2f} ({a.relative:+.1%}) | [{alo:+.2f}, {ahi:+.2f}] | {a.mde:.2f} "
            f"| {b.mean:+.2f} ({b.relative:+.1%}) | [{blo:+.2f}, {bhi:+.2f}] | {a.wins}/{a.n} |"
        )
    return lines


def _cascade_share_lines(per_seed: dict[str, Any]) -> list[str]:
    """How much of `unex_rl_ce`'s actor steps the cascading effect was, from its training logs."""
    if not _present(per_seed, "unex_rl_ce"):
        return []
    shares = np.array([np.mean(per_seed[s]["unex_rl_ce"]["log"]["extra"]["cascade_share"]) for s in per_seed])
    return [
        "",
        "`unex_rl_ce`'s cascading effect: ‖g − g_SG‖ / ‖g‖ of its actor steps (g its gradient, g_SG the same "
        "step with the downstream observations held fixed), mean over updates: "
        f"{shares.mean():.3f} over the seeds (min {shares.min():.3f}, max {shares.max():.3f}).",
    ]


def _stage_weight_lines(per_seed: dict[str, Any]) -> list[str]:
    """The constant stage weights `cem_stages` found, per (stage, objective): mean [min, max] over the seeds."""
    if not _present(per_seed, "cem_stages"):
        return []
    weights = np.array([per_seed[s]["cem_stages"]["config"]["stage_action"] for s in per_seed])  # [seeds, 3, J]
    objectives = ("watch_time", *SPARSE_V2)
    lines = [
        "",
        "`cem_stages`'s constant stage weights a_ij (search box [0, 2], started at 1; each stage ranks by "
        "Σ_j a_ij·h_ij, so only their ratios within a stage matter), mean [min, max] over the seeds:",
        "",
        "| stage | " + " | ".join(f"a_{name}" for name in objectives) + " |",
        "|---|" + "---|" * len(objectives),
    ]
    for i, stage in enumerate(("matching", "pre_ranking", "ranking")):  # models/nets/cascade.STAGES (torch-free)
        column = weights[:, i]
        cells = [
            f"{column[:, j].mean():.2f} [{column[:, j].min():.2f}, {column[:, j].max():.2f}]"
            for j in range(len(objectives))
        ]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines


def stage_biased(cfg: dict[str, Any]) -> bool:
    """Whether the run's world gives each stage's heads an error of its own (v2.2; runs before it had none)."""
    return any(cfg.get("world", {}).get("stage_bias", ()))


def results_body(per_seed: dict[str, Any], methods: list[str], level: str, stage_bias: bool = False) -> list[str]:
    """Outcomes, gains over the baselines, the seeds' comparisons, the served weights and the generated
    interpretation of one run, under headings of `level` ("##" in the main table, "###" in a section)."""
    seeds = [int(s) for s in per_seed]
    lines = [f"{level} Per-session outcomes", ""]
    lines += _outcome_rows(per_seed, methods)
    lines += _gain_rows(per_seed, methods, level)

    table, sentences = _comparison_rows(per_seed, COMPARISONS, stage_bias)
    lines += ["", f"{level} The seeds' comparisons", "", *table]
    if any(metric in row for row in table for metric in TRAINING_NOISE):
        lines += [
            "",
            "`signal_std`: the per-batch std of the scaled reward the critic regresses on (for SRS its estimate), "
            "mean over updates; `grad_cv`: std / mean of the actor's gradient norm over the second half of "
            "training. Both from each (method, seed)'s training log.",
        ]
    lines += _cascade_share_lines(per_seed)
    lines += _stage_weight_lines(per_seed)

    lines += ["", f"{level} Fusion weights served (scale-free)", ""]
    lines += [
        "Σ_j w_j·log(p_j + b_j) ranks the same under any common scaling of the powers w, so each power is shown as "
        "its share w_j / Σ_k w_k (mean over sampled session states of world "
        f"{seeds[0]}; in brackets the std across states, i.e. how much the action depends on the state).",
        "",
        "| method | " + " | ".join(f"share w_{o}" for o in ("watch_time", "like", "follow", "share", "comment")) + " |",
        "|---|---|---|---|---|---|",
    ]
    first = str(seeds[0])
    for m in methods:
        fusion = per_seed[first][m]["fusion"]
        cells = [
            f"{fusion['power_share_mean'][o]:.3f} ({fusion['power_share_std'][o]:.3f})"
            for o in ("watch_time", "like", "follow", "share", "comment")
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")

    objectives = ("watch_time", "like", "follow", "share", "comment")

    def moved(method: str) -> float:
        """Largest |share − 0.2| of a method's served powers: how far it left the initial uniform action."""
        shares = per_seed[first][method]["fusion"]["power_share_mean"]
        return max(abs(float(shares[o]) - 1 / len(objectives)) for o in objectives)

    learned = [m for m in methods if m not in BASELINES]
    if learned and "cem_session" in methods:
        far = ", ".join(f"{m} {moved(m):.3f}" for m in learned)
        sentences.append(
            f"- **How far the learned actors moved.** Largest change of a power share from the uniform start "
            f"(world {seeds[0]}): {far}; the best constant on session return is {moved('cem_session'):.3f} away. "
            "A learned row that stays closer to uniform than the best constant did not reach the constant's "
            "action within this budget, whatever its objective."
        )
    sentences += _headroom_sentences(per_seed)
    lines += ["", f"{level} Interpretation (generated from the intervals above)", "", *sentences, ""]
    return lines


def _provenance(record: dict[str, Any], command: str, where: str = "") -> str:
    """The sentence that opens every generated section: command, date, machine, load, wall time, and how
    many of its results a resumed run read back from an earlier run's folder (their time is not in it)."""
    per_seed: dict[str, Any] = record["per_seed"]
    resumed = sum(bool(r.get("resumed")) for rows in per_seed.values() for r in rows.values())
    total = sum(len(rows) for rows in per_seed.values())
    earlier = f"; {resumed} of its {total} results read back from an earlier run in the same folder" if resumed else ""
    minutes = record["seconds"] / 60
    took = (
        f"results written over {minutes:.1f} min (first to last result file; a re-render measures no wall time)"
        if record.get("seconds_is_span")
        else f"wall time {minutes:.1f} min"
    )
    return (
        f"Generated by `{command}`{where} on {dt.date.today().isoformat()}; machine: {record['machine']}, load "
        f"average {record.get('load', 'not recorded')}, {took}{earlier}."
    )


def world_section_markdown(record: dict[str, Any], command: str, key: str) -> str:
    """A whole run in another world as a RESULTS.md section of its own (`key`, e.g. world:v21): the main
    table's parts under its own title, beside the main table rather than replacing it."""
    per_seed: dict[str, Any] = record["per_seed"]
    cfg = record["config"]
    methods = [m for m in cfg["methods"] if _present(per_seed, m)]
    seeds = [int(s) for s in per_seed]
    # Sections of one world differ by their seeds and methods: the title says which, so no two read alike.
    what = ", ".join(methods) if len(methods) <= 5 else "the seed methods and their baselines"
    lines = [
        f"## Simulator {_world_name(cfg)}, seeds {format_seeds(seeds)}: {what}",
        "",
        _provenance(record, command, f" (section `{key}`)")
        + f" Seeds: {format_seeds(seeds)} ({len(seeds)} worlds). The world is simulator {_world_name(cfg)} "
        "(SIMULATOR.md; its parameters were committed before any method ran on it). Budget and evaluation as in "
        "the main table above.",
        *_scope_lines(cfg),
        "",
    ]
    return "\n".join(lines + results_body(per_seed, methods, "###", stage_biased(cfg)))


def _outcome_rows(per_seed: dict[str, Any], methods: list[str]) -> list[str]:
    """The per-session outcomes table: one row per method, mean ± 95 % half-width over seeds."""
    lines = [
        "| method | " + " | ".join(label for _, label, _ in METRICS) + " | train s |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for m in methods:
        cells = [_cell(_values(per_seed, m, key), digits) for key, _, digits in METRICS]
        secs = np.array([per_seed[s][m]["seconds"] for s in per_seed])
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {secs.mean():.0f} |")
    return lines


def _comparison_rows(
    per_seed: dict[str, Any], comparisons: tuple[Comparison, ...], stage_bias: bool = False
) -> tuple[list[str], list[str]]:
    """The comparisons table of those whose rows the run has, and one generated sentence per comparison;
    `stage_bias`: the world's stages err on their own (the mechanism texts that assume they agree change)."""
    lines = [
        "| comparison | metric | paper's direction | paired difference | 95 % CI | MDE | seeds first higher | holds? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sentences: list[str] = []
    for c in comparisons:
        if not _present(per_seed, c.first, c.second):
            continue
        p = Paired(_values(per_seed, c.first, c.metric), _values(per_seed, c.second, c.metric))
        lo, hi = p.interval
        verdict = p.verdict(c.sign)
        digits = 4 if c.metric in ("follow", "next_day_return") else 3 if c.metric in TRAINING_NOISE else 2
        lines.append(
            f"| {c.first} vs {c.second} | {c.metric} | {'first higher' if c.sign > 0 else 'first lower'} "
            f"| {p.mean:+.{digits}f} ({p.relative:+.1%}) | [{lo:+.{digits}f}, {hi:+.{digits}f}] "
            f"| {p.mde:.{digits}f} | {p.wins}/{p.n} | {verdict} |"
        )
        sentence = f"- **{c.paper}.** " + describe(p, c.first, c.second, c.metric, c.sign, digits)
        missing = c.missing_with_stage_bias if stage_bias and c.missing_with_stage_bias else c.missing
        if verdict != "holds" and missing != "—":
            sentence += f" Mechanism we believe is missing or too weak: {missing}."
        sentences.append(sentence)
    return lines, sentences


def section_markdown(record: dict[str, Any], command: str, title: str) -> str:
    """One run's rows and every comparison among them, as a RESULTS.md section of its own: for methods run
    apart from the main table (their baselines rerun beside them, since pairs need the same seeds)."""
    per_seed: dict[str, Any] = record["per_seed"]
    seeds = [int(s) for s in per_seed]
    methods = [m for m in record["config"]["methods"] if _present(per_seed, m)]
    table, sentences = _comparison_rows(per_seed, COMPARISONS, stage_biased(record["config"]))
    return "\n".join(
        [
            f"## {title}",
            "",
            _provenance(record, command)
            + f" Seeds: {format_seeds(seeds)}. Budget and evaluation as in the main table above; rows: "
            f"{', '.join(methods)}.",
            *_scope_lines(record["config"], mention_left_out=False),
            "",
            *_outcome_rows(per_seed, methods),
            "",
            *table,
            "",
            *sentences,
        ]
    )


def _scope_lines(cfg: dict[str, Any], mention_left_out: bool = True) -> list[str]:
    """What differs from the shared budget, and which registered methods this run left out."""
    from models.experiments.world_v2 import ALL_METHODS, DEMO_STEPS_FACTOR, stage_score_for

    lines = []
    methods = cfg["methods"]
    scored = cfg.get("stage_score", "predictions")
    if scored != stage_score_for(cfg.get("world", {}).get("stage_bias", ())):  # not as the world's own runs do
        lines += [
            "",
            f"**An ablation:** every policy of this run scores its stages on the heads' {scored}, not as the "
            f'world\'s own runs do (`--stage-score {scored}`; SIMULATOR.md "v2.2").',
        ]
    about: list[str] = []
    if "lagrangian_a3c" in methods or "two_stage" in methods:
        about.append(
            "Constrained rows (`lagrangian_a3c`, `two_stage`): maximise watch time while keeping each sparse "
            "response's business-weighted reward per request at least at the uniform weights' level, measured "
            "on 400 users of their own per world (seed 30000 + world seed); `sparse constraints met` counts, on "
            "the evaluation users, the responses at or above it."
        )
    if about or {"unex_rl", "independent_stages", "cem_stages"} & set(methods):
        about.append(
            "Stage rows (`unex_rl`, `independent_stages`): the stage actors learn and serve under uniform fusion "
            "weights, so their difference is the stages' alone and `uniform` is their starting point."
        )
    if "cem_stages" in methods:
        about.append(
            "`cem_stages`: their no-RL baseline, one constant weight per (stage, objective) in [0, 2] by CEM on "
            "the session return under the same fusion (`cem_session`'s search budget, started at every weight 1)."
        )
    if about:
        lines += ["", " ".join(about)]
    if "demo_a3c" in cfg["methods"]:
        lines += [
            "",
            f"`demo_a3c` is the demo's recipe, not a comparison row: A3C γ = 0.95 on E[r | s, a] for "
            f"{DEMO_STEPS_FACTOR}× the updates. `grid_one` / `grid_groups` measure the world's headroom without "
            f"RL (models/experiments/headroom.py): {cfg['grid']['candidates']} constant actions served to "
            f"{cfg['grid']['users']} selection users per world (seed 20000 + world seed), the best for everyone "
            "vs the best per observable group (segment × social propensity, 6 groups), both measured on the "
            "evaluation users.",
        ]
    if "contextual_cem" in cfg["methods"]:
        c = cfg["contextual_cem"]
        lines += [
            "",
            f"`contextual_cem` (models/algorithms/contextual_cem.py) starts from the `cem_session` row's constant "
            f"and searches one action per activity segment on the session return: {c['iterations']} iterations "
            f"of {c['population']} candidate tables, each served to the same {c['users_per_segment']} users per "
            f"segment (stratified: the small segments get as many as the large), {c['elite']} elites per "
            f"segment; a segment keeps its searched action only if it beats the constant on "
            f"{c['validation_users_per_segment']} validation users of that segment, else it serves the constant. "
            "It is the recipe of `cascade demo --world v2.1`.",
        ]
    if "contextual_a3c" in cfg["methods"]:
        lines += [
            "",
            "`contextual_a3c` is the session A3C (γ = 0.95, the A3C rows' budget and their starting exploration "
            "std, 0.2 of each action's range) started from `contextual_cem`'s table written into the actor "
            "instead of from the middle of the box: what a policy gradient adds to the search.",
        ]
    left_out = [m for m in ALL_METHODS if m not in cfg["methods"]]
    if left_out and mention_left_out:
        lines += ["", f"Registered methods not run here (no rows, no comparisons): {', '.join(left_out)}."]
    return lines


def _headroom_sentences(per_seed: dict[str, Any]) -> list[str]:
    """Whether 'beats the best constant' is detectable here: the headroom against the demo comparison's MDE."""
    if not _present(per_seed, HEADROOM.first, HEADROOM.second, DEMO.first, DEMO.second):
        return []
    head = Paired(_values(per_seed, HEADROOM.first, "return"), _values(per_seed, HEADROOM.second, "return"))
    demo = Paired(_values(per_seed, DEMO.first, "return"), _values(per_seed, DEMO.second, "return"))
    lo, hi = head.interval
    detectable = hi >= demo.mde
    text = (
        f"- **Can 'beats the best constant' be seen at {head.n} seeds?** The headroom's upper 95 % bound is "
        f"{hi:+.2f} (mean {head.mean:+.2f}, CI [{lo:+.2f}, {hi:+.2f}]); the demo-vs-constant comparison detects "
        f"{demo.mde:.2f} (its MDE). "
    )
    if detectable:
        return [text + "A gain of the headroom's size could be detected."]
    return [
        text + "Even a policy that captured all of the headroom measured here would not be detected at this "
        "number of seeds. This row chooses its per-group constants on the experiment's selection users (`grid` in "
        "the configuration), so it bounds what is detectable here, not the world's headroom: SIMULATOR.md's "
        "no-learning probe measures that on thousands of users per world."
    ]


def held_out_markdown(record: dict[str, Any], command: str) -> str:
    """The demo and A3C against the best constant on seeds never used while the demo was developed."""
    per_seed: dict[str, Any] = record["per_seed"]
    seeds = [int(s) for s in per_seed]
    world = _world_name(record["config"])
    lines = [
        "## Held-out seeds: the demo against the best constant" + ("" if world == "v2" else f" (simulator {world})"),
        "",
        f"Generated by `{command}` from the run folder; seeds {format_seeds(seeds)} were not looked at while "
        f"the rows' recipes were chosen (all on seeds 0-9: the A3C demo's on seeds 0-2 of v2, the contextual search's "
        f"on seeds 0-2 of v2.1's headroom probe). Machine load {record.get('load', 'not recorded')}. "
        "Evaluation as above (held-out users of each world, common random numbers).",
        "",
        "| comparison | paired difference in return | 95 % CI | MDE | seeds first higher | holds? |",
        "|---|---|---|---|---|---|",
    ]
    sentences = []
    for first in ("demo_a3c", "contextual_cem", "contextual_a3c", "a3c_gamma_0.95", "uniform"):
        for second in ("cem_session", "uniform"):
            if first == second or not _present(per_seed, first, second):
                continue
            p = Paired(_values(per_seed, first, "return"), _values(per_seed, second, "return"))
            lo, hi = p.interval
            lines.append(
                f"| {first} vs {second} | {p.mean:+.2f} ({p.relative:+.1%}) | [{lo:+.2f}, {hi:+.2f}] | {p.mde:.2f} "
                f"| {p.wins}/{p.n} | {p.verdict(1)} |"
            )
            if first in ("demo_a3c", "contextual_cem", "contextual_a3c") and second == "cem_session":
                sentences.append("- " + describe(p, first, second, "return"))
    return "\n".join([*lines, "", *sentences])


def _plot(per_seed: dict[str, Any], methods: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in methods if m != "cem_session"] if _present(per_seed, "cem_session") else []
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    pairs = [Paired(_values(per_seed, m, "return"), _values(per_seed, "cem_session", "return")) for m in rows]
    means = [p.mean for p in pairs]
    halves = [p.interval[1] - p.mean for p in pairs]
    ax.barh(rows, means, xerr=halves, color="tab:blue", alpha=0.8)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("session return − best constant (CEM on session return), 95 % CI over seeds")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
