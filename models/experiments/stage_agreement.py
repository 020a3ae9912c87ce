"""`cascade experiment stages`: how far the three stages' heads disagree, before any stage actor learns.

A no-learning probe of SIMULATOR.md "v2.2" (the stages' heads fitted to targets with errors of their own).
Per world: the base policy every method starts from (`world_v2.base_policy`: heads trained supervised),
then on requests of session starts, each stage's score under equal weights (every a_j = 1, on the scale
the world's runs use) against the candidates' true immediate value Σ_j weight_j·E[y_j] and against each
other, as Spearman rank correlations over each request's candidates (mean over requests), beside the
simulator's own ranking-model predictions (what the fusion orders by). Where the stages agree with each
other and with the truth, a stage actor has little to correct or to cooperate on; where none of them
orders a request's candidates much better than chance, it has little to work with.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import torch

from models.env.episodes import to_batch
from models.experiments.world_v2 import V2Config, base_policy, in_world
from models.nets.cascade import STAGES, CascadePolicy
from models.reports.stats import format_seeds, method_stream
from models.sim.world import SimulatorV2


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..N−1 along the last axis (ties broken by position: scores here are continuous)."""
    return np.argsort(np.argsort(x, axis=-1), axis=-1).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the Spearman correlation between a [B, N] and b [B, N]."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(-1, keepdims=True)
    rb -= rb.mean(-1, keepdims=True)
    r = (ra * rb).sum(-1) / np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return float(r.mean())


def stage_scores(policy: CascadePolicy, state: torch.Tensor, items: torch.Tensor) -> list[np.ndarray]:
    """Each stage's score of every candidate [B, N] under equal weights, on the policy's stage scale."""
    with torch.no_grad():  # every a_j = 1: the score is the plain sum over objectives
        return [policy.stage_values(i, state, items).sum(-1).numpy() for i in range(len(STAGES))]


def agreement(seed: int, cfg: V2Config, requests: int = 256) -> dict[str, float]:
    """The probe on world `seed`: each stage vs the truth, and each pair of stages."""
    sim, base, _ = base_policy(seed, cfg)
    assert isinstance(sim, SimulatorV2)
    rng = method_stream(seed, "stage_agreement")
    sessions = sim.sessions(requests, rng, cfg.run.session, cfg.run.n_candidates)
    batch = to_batch(sim, sessions.requests(), sessions, rng)
    reqs = batch.requests
    expected = sim.expected_responses(reqs.users, reqs.candidates, reqs.context)  # [B, N, J]
    truth = expected @ np.asarray(sim.config.business_weights, dtype=np.float64)
    scores = stage_scores(base, batch.state, batch.items)
    out = {f"{name} vs truth": spearman(score, truth) for name, score in zip(STAGES, scores, strict=True)}
    # The reference: the simulator's ranking-model predictions the fusion reads, at the business weights.
    mtl = batch.predictions.numpy().astype(np.float64) @ np.asarray(sim.config.business_weights, dtype=np.float64)
    out["MTL predictions (the fusion's input) vs truth"] = spearman(mtl, truth)
    for i in range(len(STAGES)):
        for j in range(i + 1, len(STAGES)):
            out[f"{STAGES[i]} vs {STAGES[j]}"] = spearman(scores[i], scores[j])
    return out


Column = tuple[str, Literal["predictions", "logits"]]
# v2.1 on both scales, then v2.2: what the scale does alone, and what the stages' own errors add.
COLUMNS: tuple[Column, ...] = (("v2.1", "predictions"), ("v2.1", "logits"), ("v2.2", "logits"))


def agreement_markdown(seeds: tuple[int, ...], columns: tuple[Column, ...] = COLUMNS) -> str:
    """The probe on `seeds` of each (world, stage scale), as a Markdown table (mean over seeds, [min, max])."""
    rows: dict[str, dict[Column, list[float]]] = {}
    for column in columns:
        world, score = column
        cfg = replace(in_world(V2Config(), world), stage_score=score)
        for seed in seeds:
            for key, value in agreement(seed, replace(cfg, seeds=(seed,))).items():
                rows.setdefault(key, {}).setdefault(column, []).append(value)
    lines = [
        "## How far the stages' heads agree, before any stage actor learns (no learning)",
        "",
        f"Stage agreement before any stage actor learns, worlds {format_seeds(seeds)} (256 session-start requests "
        "of 100 candidates each; Spearman rank correlation over a request's candidates, mean over requests; "
        "mean over worlds [min, max]); every stage weight a_j = 1. `cascade experiment stages --seeds "
        f"{format_seeds(seeds)}` (models/experiments/stage_agreement.py).",
        "",
        "| pair | " + " | ".join(f"{world}, stages on {score}" for world, score in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, by_column in rows.items():
        cells = [f"{np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]" for v in (by_column[c] for c in columns)]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
