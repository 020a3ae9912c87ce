"""`cascade experiment sweep`: where the mechanisms the seed methods need appear and where they vanish.

No learning: a grid of constant fusion actions (powers on watch, like and follow predictions; the share
and comment powers at 0.5, biases at 0.1) ranks each request's candidates by Σ_j w_j·log(p̂_j + b_j), the
top 6 are served, and sessions run to the end. Per value of one unanchored parameter:

- `personalisation`: the return of choosing the best grid action per user group (ζ_u below / above its
  median × segment full / other) over the best single action, selected on one half of the users and
  measured on the other (so noise does not pass for headroom); what a state-dependent policy could add;
- `objective`: the session return of the grid action best on the session return minus that of the one
  best on the immediate reward (the first request's reward), measured on the held-out half; what γ > 0
  could add over a bandit's objective.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np

from models.sim.session import SessionConfig
from models.sim.world import PatienceConfig, SimulatorV2, WorldConfig, v2_sim_config
from models.sim.world_session import SessionsV2

SWEEPS: dict[str, tuple[float, ...]] = {
    "follow": (0.0, 0.1, 0.2, 0.4),
    "interaction": (0.0, 0.05, 0.1),
    "engagement": (0.0, 0.5, 1.0, 2.0),  # × the calibrated κ_E
    "quality": (0.0, 0.05, 0.1),
}


def grid_actions() -> np.ndarray:
    """[A, 10] fusion actions (w_watch, w_like, w_follow, w_share, w_comment, b_…)."""
    rows = []
    for w_like, w_follow in product((0.0, 0.5, 1.0, 2.0), (0.0, 0.5, 1.0, 2.0)):
        rows.append([1.0, w_like, w_follow, 0.5, 0.5] + [0.1] * 5)
    return np.asarray(rows)


def session_returns(
    sim: SimulatorV2, action: np.ndarray, n_users: int, seed: int, n_candidates: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session return, first-request reward, user index) per user, same users and draws for every action."""
    rng = np.random.default_rng(seed)
    sessions = SessionsV2(sim, n_users, rng, SessionConfig(max_depth=60), n_candidates, refill=False)
    users = sessions.users.copy()
    total, first = np.zeros(n_users), np.zeros(n_users)
    w, b = action[:5], action[5:]
    while sessions.active.any():
        active = sessions.active.copy()
        requests = sessions.requests()
        p = sim.predictions(requests.users, requests.candidates, requests.context, rng)
        score = (w * np.log(np.maximum(p, 0.0) + b)).sum(-1)
        top = np.argpartition(-score, 5, axis=1)[:, :6]
        items = np.take_along_axis(requests.candidates, top, axis=1)
        step = sessions.step(requests, items)
        reward = step.expected_objective_rewards.sum(-1)
        total[active] += reward[active]
        first[active & (sessions.depth == 1)] += reward[active & (sessions.depth == 1)]
    return total, first, users


def headroom(sim: SimulatorV2, n_users: int, seed: int) -> dict[str, float]:
    actions = grid_actions()
    runs = [session_returns(sim, a, n_users, seed) for a in actions]
    totals = np.stack([r[0] for r in runs])  # [A, U]
    firsts = np.stack([r[1] for r in runs])
    users = runs[0][2]
    social = sim.social[users] > np.median(sim.social)
    group = 2 * social.astype(int) + (sim.segment[users] == 0).astype(int)
    half = np.arange(n_users) % 2 == 0  # select on even users, measure on odd ones
    best_global = int(np.argmax(totals[:, half].mean(1)))
    personal = np.zeros(n_users)
    for g in np.unique(group):
        rows = group == g
        best = int(np.argmax(totals[:, half & rows].mean(1))) if (half & rows).any() else best_global
        personal[rows] = totals[best, rows]
    held = ~half
    base = float(totals[best_global, held].mean())
    best_immediate = int(np.argmax(firsts[:, half].mean(1)))
    return {
        "best_constant_return": base,
        "personalisation": float(personal[held].mean() - base) / base,
        "objective": float(totals[best_global, held].mean() - totals[best_immediate, held].mean()) / base,
    }


def sweep(seed: int = 0, n_users: int = 600, world: WorldConfig | None = None) -> list[dict[str, float | str]]:
    world = world or WorldConfig()
    rows: list[dict[str, float | str]] = []
    for name, values in SWEEPS.items():
        for value in values:
            patience: PatienceConfig = world.session
            setting = value * patience.engagement if name == "engagement" else value
            swept = replace(world, session=replace(patience, **{name: setting}))
            sim = SimulatorV2(v2_sim_config(), seed=seed, world=swept)
            rows.append({"parameter": name, "value": setting, **headroom(sim, n_users, 10_000 + seed)})
    return rows


def sweep_markdown(seeds: tuple[int, ...], n_users: int = 400) -> str:
    """The sweep on each seed's world: mean over seeds of each row's headroom numbers."""
    per_seed = [sweep(seed, n_users) for seed in seeds]
    lines = [
        "## Where the mechanisms appear: sweeps of the unanchored parameters (no learning)",
        "",
        f"`cascade experiment sweep` on worlds {', '.join(map(str, seeds))}, {n_users} users each (half select, "
        "half measure). `personalisation`: best grid action per user group over the best single grid action, "
        "relative; `objective`: grid action best on session return over the one best on the first request's "
        "reward, relative. Both are upper-bound-style probes of what a state-dependent policy and γ > 0 can add "
        "over a constant and over a bandit objective; the other parameters stay at their SIMULATOR.md values.",
        "",
        "| parameter | value | best constant return | personalisation headroom | objective headroom |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(per_seed[0]):
        values = {k: float(np.mean([float(rows[i][k]) for rows in per_seed])) for k in row if k != "parameter"}
        lines.append(
            f"| {row['parameter']} | {values['value']:.3g} | {values['best_constant_return']:.1f} "
            f"| {values['personalisation']:+.2%} | {values['objective']:+.2%} |"
        )
    return "\n".join(lines)
