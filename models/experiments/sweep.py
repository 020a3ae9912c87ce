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
from models.sim.world import PatienceConfig, SimulatorV2, WorldConfig, v2_sim_config, world_config
from models.sim.world_session import SessionsV2

SWEEPS: dict[str, tuple[float, ...]] = {
    "follow": (0.0, 0.1, 0.2, 0.4),
    "interaction": (0.0, 0.05, 0.1),
    "engagement": (0.0, 0.5, 1.0, 2.0),  # × the calibrated κ_E
    "quality": (0.0, 0.05, 0.1),
    "history_decay": (1.0, 2.0, 4.0),  # d: sparse predictions' error grows as history shrinks (v2.1)
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


def grid_returns(sim: SimulatorV2, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(session return [A, U], first-request reward [A, U], user index [U]) of every grid action."""
    runs = [session_returns(sim, action, n_users, seed) for action in grid_actions()]
    return np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs]), runs[0][2]


def headroom(sim: SimulatorV2, n_users: int, seed: int) -> dict[str, float]:
    totals, firsts, users = grid_returns(sim, n_users, seed)
    group = observable_group(sim, users, "segment × social")
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
            if name == "history_decay":
                swept = replace(world, history_decay=setting)
            else:
                swept = replace(world, session=replace(patience, **{name: setting}))
            sim = SimulatorV2(v2_sim_config(), seed=seed, world=swept)
            rows.append({"parameter": name, "value": setting, **headroom(sim, n_users, 10_000 + seed)})
    return rows


def sweep_markdown(seeds: tuple[int, ...], n_users: int = 400, world_name: str = "v2") -> str:
    """The sweep on each seed's world of `world_name`: mean over seeds of each row's headroom numbers."""
    world = world_config(world_name)
    return sweep_table([sweep(seed, n_users, world) for seed in seeds], seeds, n_users, world_name)


def sweep_table(
    per_seed: list[list[dict[str, float | str]]], seeds: tuple[int, ...], n_users: int, world_name: str = "v2"
) -> str:
    """The sweep's section from each seed's rows (`sweep`), means over seeds, per seed in brackets."""
    lines = [
        "## Where the mechanisms appear: sweeps of the unanchored parameters (no learning)",
        "",
        f"`cascade experiment sweep --world {world_name}` on worlds {', '.join(map(str, seeds))} of simulator "
        f"{world_name}, {n_users} users each (half select, "
        "half measure). `personalisation`: best grid action per user group over the best single grid action, "
        "relative; `objective`: grid action best on session return over the one best on the first request's "
        "reward, relative. Both are upper-bound-style probes of what a state-dependent policy and γ > 0 can add "
        f"over a constant and over a bandit objective; the other parameters stay at their {world_name} values. "
        "Mean over worlds, each world's value in brackets.",
        "",
        "| parameter | value | best constant return | personalisation headroom | objective headroom |",
        "|---|---|---|---|---|",
    ]
    for i, row in enumerate(per_seed[0]):
        values = {k: [float(rows[i][k]) for rows in per_seed] for k in row if k != "parameter"}

        lines.append(
            f"| {row['parameter']} | {np.mean(values['value']):.3g} | {np.mean(values['best_constant_return']):.1f} "
            f"| {_mean_and_each(values['personalisation'])} | {_mean_and_each(values['objective'])} |"
        )
    return "\n".join(lines)


def _mean_and_each(values: list[float]) -> str:
    return f"{np.mean(values):+.2%} [" + ", ".join(f"{v:+.1%}" for v in values) + "]"


GROUPINGS = ("segment × social", "social quartile", "segment", "activity")


def observable_group(sim: SimulatorV2, users: np.ndarray, grouping: str) -> np.ndarray:
    """A group label per user from the latent segment and social propensity ζ_u behind what the policy
    observes (SIMULATOR.md §2: it sees the segment, and ζ_u only with noise)."""
    social, segment = sim.social[users], sim.segment[users]
    if grouping == "segment × social":
        out: np.ndarray = 2 * (social > np.median(sim.social)).astype(int) + (segment == 0).astype(int)
    elif grouping == "social quartile":
        out = np.digitize(social, np.quantile(sim.social, [0.25, 0.5, 0.75]))
    elif grouping == "segment":
        out = segment.astype(int)
    elif grouping == "activity":  # full, high, the three small segments together (grid_groups' split)
        out = np.minimum(segment, 2).astype(int)
    else:
        raise ValueError(f"unknown grouping {grouping!r}; known: {', '.join(GROUPINGS)}")
    return out


def group_headroom(
    totals: np.ndarray, groups: np.ndarray, splits: int = 200, min_users: int = 20, seed: int = 0
) -> dict[str, float]:
    """What choosing one constant per group adds over one constant, from per-user returns `totals` [A, U] of
    A constant actions on the same users (common random numbers).

    `split_half`: choose on a random half of the users, measure on the other, mean and 95 % range over
    `splits` random halves (a pick that fits noise shows up as a loss); `in_sample`: choose and measure on
    every user, an upper bound that noise can only raise."""
    n = totals.shape[1]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(splits):
        half = rng.permutation(n) < n // 2
        best = int(totals[:, half].mean(1).argmax())
        chosen = np.full(n, best)
        for g in np.unique(groups):
            rows = groups == g
            if (half & rows).sum() >= min_users:
                chosen[rows] = int(totals[:, half & rows].mean(1).argmax())
        held = ~half
        base = totals[best, held].mean()
        gains.append((totals[chosen[held], np.flatnonzero(held)].mean() - base) / base)
    best = int(totals.mean(1).argmax())
    oracle = np.array([totals[:, groups == g].mean(1).max() * (groups == g).sum() for g in np.unique(groups)]).sum() / n
    return {
        "split_half": float(np.mean(gains)),
        "split_half_low": float(np.percentile(gains, 2.5)),
        "split_half_high": float(np.percentile(gains, 97.5)),
        "in_sample": float((oracle - totals[best].mean()) / totals[best].mean()),
        "groups_with_own_best": float(
            sum(int(totals[:, groups == g].mean(1).argmax()) != best for g in np.unique(groups))
        ),
        "groups": float(len(np.unique(groups))),
    }


def headroom_markdown(seeds: tuple[int, ...], n_users: int = 2000, world_name: str = "v2") -> str:
    """Per world: the grid's per-user session returns on `n_users` users, then each grouping's headroom."""
    lines = [
        "## Personalisation headroom at large samples (no learning)",
        "",
        f"`cascade experiment headroom --world {world_name} --seeds {','.join(map(str, seeds))}` "
        "(models/experiments/sweep.py): the "
        f"sweep's {len(grid_actions())} constant actions served to the same {n_users} users per world (seed "
        "50000 + world seed, common random numbers, fusion over the 100 candidates, top 6, sessions to their "
        f"end), at SIMULATOR.md's parameters of {world_name}. Per grouping by the latent segment and social "
        "propensity (the policy sees ζ_u only with noise): the relative gain of one "
        "constant per group over one constant, chosen on a random half of the users and measured on the other "
        "(mean [2.5th, 97.5th percentile] over 200 random halves), and in-sample (chosen and measured on "
        "everyone: an upper bound, raised by noise).",
        "",
        "| world | return: worst / best grid action | grouping | split-half gain | in-sample bound "
        "| groups whose best action differs |",
        "|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        sim = SimulatorV2(v2_sim_config(), seed=seed, world=world_config(world_name))
        totals, _, users = grid_returns(sim, n_users, 50_000 + seed)
        means = totals.mean(1)
        for grouping in GROUPINGS:
            h = group_headroom(totals, observable_group(sim, users, grouping))
            lines.append(
                f"| {seed} | {means.min():.1f} / {means.max():.1f} | {grouping} | {h['split_half']:+.2%} "
                f"[{h['split_half_low']:+.2%}, {h['split_half_high']:+.2%}] | {h['in_sample']:+.2%} "
                f"| {h['groups_with_own_best']:.0f} of {h['groups']:.0f} |"
            )
    return "\n".join(lines)
