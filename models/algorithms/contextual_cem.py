"""Contextual CEM: one constant fusion action per activity segment, searched on the session return.

Why a per-segment table: in simulator v2.1 the sparse predictions get noisier the less history a user
has (SIMULATOR.md "v2.1"), so the best fusion action depends on the user's activity segment, which the
policy observes (the one-hot at the head of the user features). The whole personalisation headroom of
that world is one action per segment (RESULTS.md `sim:headroom_v21`). Kuaishou's CEM (seed 001) searches
one constant for everyone and so "lacks personalization"; here it searches one per segment.

Segments do not interact (every user's session depends only on what that user is served), so one
population of candidate *tables* is G independent searches at the cost of one: every candidate is served
to the same users (common random numbers), scored per segment on that segment's users, and each segment
keeps its own elites. Users are drawn stratified, the same number per segment, so the small segments
(new and low-active users are 3.8 % of the population) are searched as precisely as the large ones.

The search starts from a warm start (the best single constant), and a segment keeps its searched action
only if it beats the warm start on a validation draw of its own (fresh sessions, pools and responses of
users drawn from the same world; the small segments have only a few hundred users, so the search has
met most of them, as every method of an experiment trains on the world's population it is evaluated
on): a segment whose search found nothing serves the constant. `write_segment_table` writes the result
into the fusion actor's own MLP, so the policy exports, serves and logs propensities like any learned actor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from models.env.episodes import FusionFn, RunConfig, session_outcomes
from models.nets.cascade import CascadePolicy
from models.sim.simulator import IntArray, Simulator


@dataclass(frozen=True)
class ContextualCEMConfig:
    iterations: int = 5
    population: int = 8
    elite: int = 3
    users_per_segment: int = 100  # per iteration, the same users for every candidate table
    std_fraction: float = 0.25  # the search's first std, of each action's range (cem_session's)
    validation_users_per_segment: int = 300  # the keep-or-fall-back check, a draw of its own


@dataclass(frozen=True)
class SegmentSearch:
    table: np.ndarray  # [G, A] the action served to each segment
    searched: np.ndarray  # [G, A] the search's final means, before the validation check
    kept: np.ndarray  # [G] bool: the segment serves its searched action (else the warm start)
    validation_gain: np.ndarray  # [G] mean return of `searched` minus the warm start's, validation users
    history: list[list[float]]  # per iteration, per segment: the elites' mean return

    def record(self) -> dict[str, object]:
        """What a run folder or a manifest keeps of the search (JSON-ready)."""
        return {
            "table": self.table.tolist(),  # unrounded: what was written can be written again from the record
            "kept": self.kept.tolist(),
            # Measured on the draw that chose `kept`: optimistic for the kept segments.
            "validation_gain": self.validation_gain.round(3).tolist(),
            "history": self.history,
        }


def n_segments(sim: Simulator) -> int:
    world = getattr(sim, "world", None)
    if world is None:
        raise ValueError("activity segments are defined on simulator v2 worlds")
    return len(world.segment_shares)


def segments_of(sim: Simulator) -> np.ndarray:
    """Segment index of every user of the world, read from the one-hot the policy observes."""
    segment: np.ndarray = np.argmax(sim.user_features[:, : n_segments(sim)], axis=1)
    return segment


def stratified_users(sim: Simulator, per_segment: int, rng: np.random.Generator) -> IntArray:
    """`per_segment` users of every segment (with replacement), segment by segment."""
    segment = segments_of(sim)
    return np.concatenate([rng.choice(np.flatnonzero(segment == g), per_segment) for g in range(n_segments(sim))])


def table_fusion(table: np.ndarray) -> FusionFn:
    """states [B, S] → the table's row for each state's segment (the one-hot in its first G columns)."""
    rows = torch.from_numpy(table.astype(np.float32))
    g = table.shape[0]
    return lambda state: rows[torch.argmax(state[:, :g], dim=1)]


def _per_segment_returns(
    policy: CascadePolicy, sim: Simulator, run: RunConfig, users: IntArray, seed: int, table: np.ndarray
) -> np.ndarray:
    """Mean session return of each segment's users when every segment is served its row of `table`."""
    out = session_outcomes(policy, sim, run, users=len(users), seed=seed, fusion_fn=table_fusion(table), user_ids=users)
    segment = segments_of(sim)[out.users]
    return np.array([out.returns[segment == g].mean() for g in range(table.shape[0])])


def segment_elites(candidates: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's own `n` best candidates: candidates [P, G, A], scores [P, G] → ([n, G, A], [n, G])."""
    elite = np.argsort(scores, axis=0)[-n:]  # [n, G]: per segment, the rows of its best candidates
    return candidates[elite, np.arange(scores.shape[1])], np.take_along_axis(scores, elite, 0)


@torch.no_grad()
def contextual_cem(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    run: RunConfig,
    config: ContextualCEMConfig,
    warm_start: torch.Tensor,
) -> SegmentSearch:
    """The per-segment table [G, A] searched from `warm_start` [A], checked on validation users."""
    g = n_segments(sim)
    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    start = np.tile(warm_start.numpy().astype(np.float64), (g, 1))
    mean, std = start.copy(), np.tile(config.std_fraction * (high - low), (g, 1))
    history: list[list[float]] = []
    for _ in range(config.iterations):
        seed = int(rng.integers(0, 2**31 - 1))
        users = stratified_users(sim, config.users_per_segment, rng)
        candidates = np.clip(mean + std * rng.standard_normal((config.population, *mean.shape)), low, high)
        scores = np.stack([_per_segment_returns(policy, sim, run, users, seed, c) for c in candidates])  # [P, G]
        chosen, best = segment_elites(candidates, scores, config.elite)
        mean, std = chosen.mean(0), chosen.std(0) + 1e-3
        history.append(best.mean(0).round(3).tolist())
    seed = int(rng.integers(0, 2**31 - 1))
    users = stratified_users(sim, config.validation_users_per_segment, rng)
    gain = _per_segment_returns(policy, sim, run, users, seed, mean) - _per_segment_returns(
        policy, sim, run, users, seed, start
    )
    kept = gain > 0
    table = np.where(kept[:, None], mean, start)
    return SegmentSearch(table, mean, kept, gain, history)


def write_segment_table(
    policy: CascadePolicy, table: torch.Tensor, default: torch.Tensor, std_fraction: float = 0.02
) -> None:
    """Make the fusion actor's MLP serve `table[g]` [G, A] to every state of segment g, exactly, and `default`
    [A] to a state without a segment one-hot (e.g. a client that sends zeros there).

    `default` is written as a constant (`CascadePolicy.serve_constant`: the last layer's bias); then, with
    ReLU layers, the first G units of every hidden layer become identity rows that carry the segment one-hot
    e_g (the state's first G columns) through unchanged, and the last layer's column g adds the difference
    between row g's logit and the default's. The other hidden units keep their weights (the last layer
    ignores them), so a policy gradient started from the table still reaches every layer.
    """
    fusion, g = policy.fusion, table.shape[0]
    layers = [m for m in fusion.net if isinstance(m, nn.Linear)]
    if any(not isinstance(m, nn.Linear | nn.ReLU) for m in fusion.net):
        raise ValueError("a segment table is written through ReLU layers only")
    if any(layer.out_features < g for layer in layers[:-1]) or layers[0].in_features < g:
        raise ValueError(f"a {g}-segment table needs the state's and the hidden layers' widths at least {g}")
    policy.serve_constant(default, std_fraction)
    with torch.no_grad():
        for layer in layers[:-1]:
            layer.weight[:g].zero_()
            layer.weight[:g, :g] = torch.eye(g)
            layer.bias[:g].zero_()
        layers[-1].weight[:, :g] = (fusion.mean_logit(table) - fusion.mean_logit(default)).T


def fit_segment_table(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    run: RunConfig,
    config: ContextualCEMConfig,
    warm_start: torch.Tensor,
) -> dict[str, object]:
    """Search the table from `warm_start`, write it into the policy's fusion actor (the warm start as its
    default row) and return what a run folder or a manifest keeps of it."""
    search = contextual_cem(policy, sim, rng, run, config, warm_start)
    write_segment_table(policy, torch.from_numpy(search.table.astype(np.float32)), warm_start)
    return {"contextual_cem": asdict(config), "warm_start": warm_start.tolist(), **search.record()}
