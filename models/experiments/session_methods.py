"""`cascade experiment seeds`: every method of seeds 000–002 on the same simulated sessions, ≥ 3 seeds.

Per seed: one simulated world with session dynamics (models/sim/session.py), one base policy (stage heads
trained supervised, RND predictor trained), then each method trains a copy of the base policy and is
evaluated by `episodes.evaluate` on the same fixed users (common random numbers). Every run writes its
config, seed, training curves and metrics to `<runs>/<seed>/<method>/`; seed 0's policies are also
exported through `export/` (ONNX + parity) to `<runs>/0/<method>/bundle/`. Then RESULTS.md and a PNG.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from models.algorithms.a3c import SessionA3CConfig, train_a3c
from models.algorithms.cem import CEMConfig, cem_fusion_action
from models.algorithms.lagrangian import LagrangianConfig, train_lagrangian
from models.algorithms.multi_critic import MultiCriticConfig, train_multi_critic
from models.algorithms.rnd import ExplorationWidener, novelty_bonus, train_rnd
from models.algorithms.srs import SRSConfig, train_srs
from models.algorithms.supervised import train_heads
from models.algorithms.two_stage import TwoStageConfig, train_two_stage
from models.algorithms.unex_rl import UnexConfig, train_stages
from models.env.episodes import RunConfig, TrainLog, evaluate
from models.nets.cascade import CascadePolicy, PolicyConfig
from models.sim.config import SimConfig
from models.sim.simulator import Simulator

SPARSE = ("like", "follow", "share", "comment")


@dataclass(frozen=True)
class ExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    sim: SimConfig = field(default_factory=lambda: SimConfig(session_features=("depth", "satisfaction")))
    run: RunConfig = field(default_factory=lambda: RunConfig(steps=300, sessions=128))
    head_steps: int = 200
    rnd_steps: int = 200
    eval_users: int = 400
    export_seed: int | None = 0  # export every method's policy of this seed through export/
    threads: int = 1


class _EvalKwargs(TypedDict):
    """The fixed users `evaluate` serves every method of a seed to."""

    users: int
    seed: int


@dataclass
class MethodResult:
    metrics: dict[str, float]
    log: TrainLog | None
    seconds: float
    config: dict[str, Any]


def _methods(
    base: CascadePolicy,
    sim: Simulator,
    cfg: ExperimentConfig,
    cem: torch.Tensor,
    thresholds: dict[str, float],
    rng: np.random.Generator,
) -> dict[str, Callable[[CascadePolicy], tuple[TrainLog | None, dict[str, Any]]]]:
    run = cfg.run
    with torch.no_grad():
        reference = float(base.rnd(_states(sim, run, rng)).mean())

    def a3c(gamma: float) -> Callable[[CascadePolicy], tuple[TrainLog, dict[str, Any]]]:
        config = SessionA3CConfig(run=run, gamma=gamma)
        return lambda p: (train_a3c(p, sim, rng, config), asdict(config))

    def multi(p: CascadePolicy) -> tuple[TrainLog, dict[str, Any]]:
        config = MultiCriticConfig(run=run)
        return train_multi_critic(p, sim, rng, config), asdict(config)

    def lagrangian(p: CascadePolicy) -> tuple[TrainLog, dict[str, Any]]:
        config = LagrangianConfig(thresholds=thresholds, run=run)
        return train_lagrangian(p, sim, rng, config), asdict(config)

    def two_stage(p: CascadePolicy) -> tuple[TrainLog, dict[str, Any]]:
        config = TwoStageConfig(run=run, auxiliary_steps=run.steps // 2)
        return train_two_stage(p, sim, rng, config)[0], asdict(config)

    def srs(shared: bool) -> Callable[[CascadePolicy], tuple[TrainLog, dict[str, Any]]]:
        config = SRSConfig(a3c=SessionA3CConfig(run=run), shared_embedding=shared)
        return lambda p: (train_srs(p, sim, rng, config)[0], asdict(config))

    def rnd(p: CascadePolicy) -> tuple[TrainLog, dict[str, Any]]:
        config = SessionA3CConfig(run=run)
        widen = ExplorationWidener(p.rnd, reference, max_scale=2.0)
        log = train_a3c(p, sim, rng, config, bonus=novelty_bonus(p.rnd, reference, 0.1), widen=widen)
        return log, {**asdict(config), "rnd": {"reference": reference, "max_scale": 2.0, "bonus_weight": 0.1}}

    def stages(independent: bool) -> Callable[[CascadePolicy], tuple[TrainLog, dict[str, Any]]]:
        config = UnexConfig(run=replace(run, actor_lr=1e-3), independent=independent)

        def train(p: CascadePolicy) -> tuple[TrainLog, dict[str, Any]]:
            log = train_stages(p, sim, rng, config, cem)
            p.serve_constant(cem)
            return log, asdict(config)

        return train

    def hand_tuned(p: CascadePolicy) -> tuple[None, dict[str, Any]]:
        p.serve_constant(cem)
        return None, {"cem_action": cem.tolist(), "cem": asdict(CEMConfig())}

    return {
        "hand_tuned_cem": hand_tuned,
        "a3c_gamma_0": a3c(0.0),
        "a3c_gamma_0.95": a3c(0.95),
        "multi_critic": multi,
        "lagrangian_a3c": lagrangian,
        "two_stage": two_stage,
        "a3c_srs": srs(False),
        "a3c_srs2": srs(True),
        "a3c_rnd": rnd,
        "independent_stages": stages(True),
        "unex_rl": stages(False),
    }


def _states(sim: Simulator, run: RunConfig, rng: np.random.Generator, n: int = 512) -> torch.Tensor:
    """Fusion states of session starts and of sessions in progress (random depth and satisfaction)."""
    sessions = sim.sessions(n, rng, run.session, run.n_candidates)
    sessions.depth = rng.integers(0, run.session.max_depth, n)
    sessions.satisfaction = rng.uniform(0.7, 1.0, n)
    requests = sessions.requests()
    state = np.concatenate([requests.user_features, requests.context, sessions.session_features()], axis=1)
    return torch.from_numpy(state)


# Writes one trained method's bundle (export/method_bundle.py): given by the caller, since models/ imports no exporter.
Exporter = Callable[[CascadePolicy, "ExperimentConfig", Path, str, int], None]


def run_seed(
    seed: int, cfg: ExperimentConfig, runs: Path, exporter: Exporter | None = None
) -> dict[str, dict[str, Any]]:
    """All methods on one seed; writes `<runs>/<seed>/<method>/{config,metrics,curves}.json`, and with an
    `exporter`, each method's bundle on `cfg.export_seed`."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    sim = Simulator(cfg.sim, seed=seed)
    rng = np.random.default_rng([seed, 7])
    base = CascadePolicy(PolicyConfig.from_sim(cfg.sim))
    train_heads(base, sim, rng, steps=cfg.head_steps)
    train_rnd(base.rnd, lambda n: _states(sim, cfg.run, rng, n), cfg.rnd_steps)
    eval_kwargs: _EvalKwargs = {"users": cfg.eval_users, "seed": 10_000 + seed}

    cem, _ = cem_fusion_action(base, sim, rng, cfg.run, CEMConfig())
    cem_metrics = evaluate(base, sim, cfg.run, fusion_action=cem, **eval_kwargs)
    weights = sim.business_weights
    # Constraints of the constrained methods: keep each sparse response at the hand-tuned baseline's rate.
    thresholds = {name: cem_metrics[f"{name}_per_request"] * weights[name] for name in SPARSE}

    out: dict[str, dict[str, Any]] = {}
    for name, train in _methods(base, sim, cfg, cem, thresholds, rng).items():
        policy = copy.deepcopy(base)
        started = time.perf_counter()
        log, config = train(policy)
        seconds = time.perf_counter() - started
        policy.eval()
        metrics = evaluate(policy, sim, cfg.run, **eval_kwargs)
        folder = runs / str(seed) / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(
            json.dumps(
                {"seed": seed, "method": name, "config": config, "simulator": asdict(cfg.sim)}, indent=1, default=str
            )
        )
        (folder / "metrics.json").write_text(
            json.dumps({"metrics": metrics, "seconds": seconds, "thresholds": thresholds}, indent=1)
        )
        if log is not None:
            (folder / "curves.json").write_text(json.dumps(asdict(log)))
        if exporter is not None and cfg.export_seed == seed:
            exporter(policy, cfg, folder / "bundle", name, seed)
        out[name] = {
            "metrics": metrics,
            "seconds": seconds,
            "thresholds": thresholds,
            "log": asdict(log) if log else None,
        }
    return out


def run_experiment(
    cfg: ExperimentConfig, runs: Path, results: Path, workers: int = 2, exporter: Exporter | None = None
) -> Path:
    """Run every seed (in `workers` processes), then write RESULTS.md and the plot next to it."""
    started = time.perf_counter()
    runs.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.seeds)
    from tqdm import tqdm

    with ProcessPoolExecutor(max_workers=workers) as pool:
        outputs = pool.map(run_seed, seeds, [cfg] * len(seeds), [runs] * len(seeds), [exporter] * len(seeds))
        per_seed = dict(zip(seeds, tqdm(outputs, total=len(seeds), desc="seeds"), strict=True))
    seconds = time.perf_counter() - started
    machine = f"{platform.machine()}, {_cores()} cores"
    record = {"seconds": seconds, "machine": machine, "per_seed": {str(k): v for k, v in per_seed.items()}}
    (runs / "all.json").write_text(json.dumps(record))
    from models.reports.session_methods import write_results

    return write_results(per_seed, cfg, results, seconds, machine=machine)


def render_saved(cfg: ExperimentConfig, runs: Path, results: Path) -> Path:
    """Rewrite RESULTS.md and the plot from `<runs>/all.json` of a finished run (its numbers, its wall time)."""
    from models.reports.session_methods import write_results

    record = json.loads((runs / "all.json").read_text())
    per_seed = {int(k): v for k, v in record["per_seed"].items()}
    return write_results(per_seed, cfg, results, record["seconds"], machine=record["machine"])


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))
