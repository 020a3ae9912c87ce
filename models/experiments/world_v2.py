"""`cascade experiment v2`: the seed methods and their honest baselines in simulator v2, on explicit seeds.

Per seed: one v2 world (models/sim/world.py, parameters fixed in SIMULATOR.md), one base policy (stage
heads trained supervised, RND predictor trained), then every method trains a copy of the base policy and
is evaluated on the same fixed users (common random numbers: same users, pools, predictions and draws).
Every method of a seed gets its own random stream (models/reports/stats.method_stream: a SeedSequence
of the seed and a stable hash of the method's name), so adding or dropping a method never moves the
numbers of another. Baselines beside every RL row:
- `uniform`: every power w_j = 1, every bias b_j at the middle of its range;
- `cem_immediate`: the best constant action by CEM on the immediate request reward (Kuaishou's CEM);
- `cem_session`: the best constant action by CEM on the session return, the objective the RL rows have.
`contextual_cem` is that search run once more per activity segment from its own `cem_session` constant
(models/algorithms/contextual_cem.py): the no-RL row that can use what the headroom probe measures.
`contextual_a3c` is the RL step from there: the session A3C (γ = 0.95, the comparison rows' budget and
exploration) started from `contextual_cem`'s table instead of the middle of the box. `cem_stages` is the
stage rows' constant: the best constant stage weights by CEM on the session return, under the uniform
fusion the stage actors learn with. `unex_rl_ce` is UNEX-RL without its stop-gradient: the actors' update
also follows the cascading effect (models/algorithms/unex_rl.py, `relaxed_execution`).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from models.algorithms.a3c import SessionA3CConfig, train_a3c
from models.algorithms.cem import (
    CEMConfig,
    SessionCEMConfig,
    cem_fusion_action,
    cem_session_action,
    cem_stage_action,
)
from models.algorithms.contextual_cem import ContextualCEMConfig, fit_segment_table, write_segment_table
from models.algorithms.lagrangian import LagrangianConfig, train_lagrangian
from models.algorithms.multi_critic import MultiCriticConfig, train_multi_critic
from models.algorithms.rnd import ExplorationWidener, novelty_bonus, train_rnd
from models.algorithms.srs import SRSConfig, train_srs
from models.algorithms.supervised import train_heads
from models.algorithms.two_stage import TwoStageConfig, train_two_stage
from models.algorithms.unex_rl import UnexConfig, train_stages
from models.env.episodes import RunConfig, TrainLog, evaluate, to_batch
from models.experiments.headroom import GridChoice, GridConfig, GroupedConstantFusion, choose, observable_groups
from models.nets.cascade import CascadePolicy, PolicyConfig
from models.reports.stats import method_stream, torch_seed
from models.sim.session import SessionConfig
from models.sim.world import SPARSE_V2, SimulatorV2, WorldConfig, v2_sim_config, world_config

# Most important first: the brief's order of comparisons.
ALL_METHODS = (
    "uniform",
    "cem_immediate",
    "cem_session",
    "a3c_gamma_0",
    "a3c_gamma_0.95",
    "multi_critic",
    "a3c_srs",
    "a3c_srs2",
    "a3c_rnd",
    "grid_one",
    "grid_groups",
    "contextual_cem",
    "contextual_a3c",
    "demo_a3c",
    "lagrangian_a3c",
    "two_stage",
    "cem_stages",
    "independent_stages",
    "unex_rl",
    "unex_rl_ce",
)
# The exploration std the A3C rows start with (FusionActor's init_std_fraction), given to contextual_a3c's
# written table too: the table's own bundles serve a 2 % std, too narrow for a policy gradient to move it.
A3C_START_STD_FRACTION = 0.2
# Users the constrained methods' thresholds are measured on (seed THRESHOLD_SEED + world seed): neither the
# evaluation users (10000 + seed) nor the headroom probe's selection users (20000 + seed).
THRESHOLD_SEED = 30_000


def v2_run() -> RunConfig:
    """The training budget of every method of a comparison (the same for each: no method gets more)."""
    return RunConfig(
        steps=300,
        sessions=128,
        n_candidates=100,
        stage_sizes=(60, 40, 20),
        k=6,  # KuaiRand's list size (the calibration's slate)
        session=SessionConfig(max_depth=60),
    )


@dataclass(frozen=True)
class V2Config:
    seeds: tuple[int, ...] = tuple(range(10))
    methods: tuple[str, ...] = ALL_METHODS
    world: WorldConfig = field(default_factory=WorldConfig)
    world_name: str = "v2"  # which of SIMULATOR.md's worlds `world` is (`in_world`)
    run: RunConfig = field(default_factory=v2_run)
    head_steps: int = 200
    rnd_steps: int = 200
    eval_users: int = 500
    cem: SessionCEMConfig = field(default_factory=SessionCEMConfig)
    cem_immediate: CEMConfig = field(default_factory=CEMConfig)
    # The headroom probe (no RL, models/experiments/headroom.py): one grid of constants, the best one
    # for everyone (`grid_one`) and the best one per observable group (`grid_groups`).
    grid: GridConfig = field(default_factory=GridConfig)
    contextual_cem: ContextualCEMConfig = field(default_factory=ContextualCEMConfig)
    threads: int = 1
    resume: bool = False  # keep the (seed, method) results already in the run folder
    stage_score: Literal["predictions", "logits"] = "predictions"  # PolicyConfig.stage_score of every policy


def in_world(cfg: V2Config, name: str) -> V2Config:
    """`cfg` in SIMULATOR.md's world `name` (v2, v2.1 or v2.2) at its committed parameters. Where the stages'
    heads have errors of their own (v2.2) the stages score on the heads' logits, one scale for every
    objective: on raw predictions watch minutes outweigh the probabilities and every stage sorts by watch."""
    world = world_config(name)
    return replace(cfg, world=world, world_name=name, stage_score=stage_score_for(world.stage_bias))


def stage_score_for(stage_bias: Sequence[float]) -> Literal["predictions", "logits"]:
    """How a world's own runs score the stages: on logits where its stages' heads err on their own (v2.2)."""
    return "logits" if any(stage_bias) else "predictions"


DEMO_STEPS_FACTOR = 2
Train = Callable[[CascadePolicy, np.random.Generator], tuple[TrainLog | None, dict[str, Any]]]


def _uniform(policy: CascadePolicy) -> torch.Tensor:
    fusion = policy.fusion
    n = fusion.action_dim // 2
    return torch.cat([torch.ones(n), 0.5 * (fusion.low + fusion.high)[n:]])


def constraint_thresholds(base: CascadePolicy, sim: SimulatorV2, run: RunConfig, seed: int) -> dict[str, float]:
    """C_i of the constrained methods (seed 001's TSCAC setting): keep each sparse response's business-weighted
    reward per request at least at the uniform weights' level, measured on users of their own."""
    metrics = evaluate(base, sim, run, users=400, seed=THRESHOLD_SEED + seed, fusion_action=_uniform(base))
    weights = sim.business_weights
    return {name: metrics[f"{name}_per_request"] * weights[name] for name in SPARSE_V2}


def constraints_met(metrics: dict[str, float], thresholds: dict[str, float], weights: dict[str, float]) -> int:
    """How many of the sparse responses a policy kept at or above their thresholds on the evaluation users."""
    return sum(metrics[f"{name}_per_request"] * weights[name] >= c for name, c in thresholds.items())


def _trainers(
    sim: SimulatorV2,
    cfg: V2Config,
    reference: float,
    seed: int,
    thresholds: dict[str, float],
    finished: Path | None = None,
) -> dict[str, Train]:
    """Each method's training on world `seed`. `finished`: the seed's folder of an earlier run of this
    configuration (resumed), whose `contextual_cem` result gives `contextual_a3c` its table unrefitted."""
    run = cfg.run
    group_of = observable_groups(sim)
    chosen: list[GridChoice] = []  # both grid rows of a seed share one set of selection rollouts

    def grid_choice(p: CascadePolicy) -> GridChoice:
        if not chosen:
            chosen.append(choose(p, sim, run, seed, cfg.grid, group_of))
        return chosen[0]

    constants: list[tuple[torch.Tensor, list[float]]] = []  # cem_session's search, shared with contextual_cem

    def cem_session(p: CascadePolicy) -> tuple[torch.Tensor, list[float]]:
        # Always on cem_session's own stream: the same constant whichever of the two rows asks first.
        if not constants:
            constants.append(cem_session_action(p, sim, method_stream(seed, "cem_session"), run, cfg.cem))
        return constants[0]

    def constant(kind: str) -> Train:
        def train(p: CascadePolicy, rng: np.random.Generator) -> tuple[None, dict[str, Any]]:
            if kind == "uniform":
                action = _uniform(p)
                info: dict[str, Any] = {}
            elif kind == "immediate":
                action, history = cem_fusion_action(p, sim, rng, run, cfg.cem_immediate)
                info = {"cem": asdict(cfg.cem_immediate), "history": history}
            else:
                action, history = cem_session(p)
                info = {"cem": asdict(cfg.cem), "history": history}
            p.serve_constant(action)
            return None, {**info, "action": action.tolist()}

        return train

    def grid(per_group: bool) -> Train:
        def train(p: CascadePolicy, rng: np.random.Generator) -> tuple[None, dict[str, Any]]:
            c = grid_choice(p)
            actions = torch.from_numpy(c.actions.astype(np.float32))
            if per_group:
                p.fusion = GroupedConstantFusion(p.fusion, actions[torch.from_numpy(c.per_group)], group_of)
            else:
                p.serve_constant(actions[c.best])
            info = {"grid": asdict(cfg.grid), "best": c.best, "per_group": c.per_group.tolist()}
            return None, {**info, "selection_returns": c.selection_returns.round(3).tolist()}

        return train

    tables: list[dict[str, Any]] = []  # contextual_cem's fit, shared with contextual_a3c

    def segment_table(p: CascadePolicy) -> dict[str, Any]:
        """contextual_cem's fit, always on that row's own streams (the same table whichever row asks first),
        or read back from its result in a resumed run folder (the table as recorded there)."""
        if not tables:
            done = finished / "contextual_cem" / "metrics.json" if finished is not None else None
            if done is not None and done.exists():
                tables.append(json.loads(done.read_text())["config"])
            else:
                # Warm start: the cem_session row's constant, so the pair measures what the segments add to it.
                fitting = copy.deepcopy(p)
                start, history = cem_session(fitting)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(torch_seed(seed, "contextual_cem"))
                    rng = method_stream(seed, "contextual_cem")
                    fitted = fit_segment_table(fitting, sim, rng, run, cfg.contextual_cem, start)
                tables.append({"cem": asdict(cfg.cem), "warm_start_history": history, **fitted})
        return tables[0]

    def write_table(p: CascadePolicy, fitted: dict[str, Any], std_fraction: float = 0.02) -> None:
        table = torch.tensor(fitted["table"], dtype=torch.float32)
        write_segment_table(p, table, torch.tensor(fitted["warm_start"], dtype=torch.float32), std_fraction)

    def contextual(p: CascadePolicy, rng: np.random.Generator) -> tuple[None, dict[str, Any]]:
        fitted = segment_table(p)
        write_table(p, fitted)
        return None, fitted

    def contextual_a3c(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        fitted = segment_table(p)
        write_table(p, fitted, A3C_START_STD_FRACTION)
        config = SessionA3CConfig(run=run, gamma=0.95)
        start = {"table": fitted["table"], "warm_start": fitted["warm_start"], "std_fraction": A3C_START_STD_FRACTION}
        return train_a3c(p, sim, rng, config), {**asdict(config), "start": start}

    def a3c(gamma: float) -> Train:
        config = SessionA3CConfig(run=run, gamma=gamma)
        return lambda p, rng: (train_a3c(p, sim, rng, config), asdict(config))

    def demo(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        # The demo's recipe (models/algorithms/demo_policy.py): γ = 0.95 on E[r | s, a], the signal CEM
        # scores its constants with, for twice the updates of the comparison rows.
        config = SessionA3CConfig(run=replace(run, reward="expected", steps=DEMO_STEPS_FACTOR * run.steps), gamma=0.95)
        return train_a3c(p, sim, rng, config), asdict(config)

    def multi(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        config = MultiCriticConfig(run=run)
        return train_multi_critic(p, sim, rng, config), asdict(config)

    def srs(shared: bool) -> Train:
        config = SRSConfig(a3c=SessionA3CConfig(run=run), shared_embedding=shared)
        return lambda p, rng: (train_srs(p, sim, rng, config)[0], asdict(config))

    def rnd(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        config = SessionA3CConfig(run=run)
        widen = ExplorationWidener(p.rnd, reference, max_scale=2.0)
        log = train_a3c(p, sim, rng, config, bonus=novelty_bonus(p.rnd, reference, 0.1), widen=widen)
        return log, {**asdict(config), "rnd": {"reference": reference, "max_scale": 2.0, "bonus_weight": 0.1}}

    def lagrangian(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        config = LagrangianConfig(thresholds=thresholds, run=run)
        return train_lagrangian(p, sim, rng, config), asdict(config)

    def two_stage(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
        # The auxiliary actors share the main budget's updates (half of it each), as in the v1 comparison.
        config = TwoStageConfig(run=run, auxiliary_steps=run.steps // 2)
        return train_two_stage(p, sim, rng, config)[0], asdict(config)

    def stages(independent: bool, cascade_gradient: bool = False) -> Train:
        # Stage actors learn under a fixed fusion (uniform weights, the comparison's common starting point),
        # which both rows then serve: the difference is the stages' alone (seed 000's setting).
        config = UnexConfig(run=replace(run, actor_lr=1e-3), independent=independent, cascade_gradient=cascade_gradient)

        def train(p: CascadePolicy, rng: np.random.Generator) -> tuple[TrainLog, dict[str, Any]]:
            fusion = _uniform(p)
            log = train_stages(p, sim, rng, config, fusion)
            p.serve_constant(fusion)
            return log, asdict(config)

        return train

    def stage_constant(p: CascadePolicy, rng: np.random.Generator) -> tuple[None, dict[str, Any]]:
        # The stage rows' no-RL baseline: the best constant stage weights under the same uniform fusion.
        fusion = _uniform(p)
        action, history = cem_stage_action(p, sim, rng, run, cfg.cem, fusion)
        p.serve_constant_stages(action)
        p.serve_constant(fusion)
        return None, {"cem": asdict(cfg.cem), "history": history, "stage_action": action.tolist()}

    return {
        "uniform": constant("uniform"),
        "cem_immediate": constant("immediate"),
        "cem_session": constant("session"),
        "a3c_gamma_0": a3c(0.0),
        "a3c_gamma_0.95": a3c(0.95),
        "multi_critic": multi,
        "a3c_srs": srs(False),
        "a3c_srs2": srs(True),
        "a3c_rnd": rnd,
        "grid_one": grid(False),
        "grid_groups": grid(True),
        "contextual_cem": contextual,
        "contextual_a3c": contextual_a3c,
        "demo_a3c": demo,
        "lagrangian_a3c": lagrangian,
        "two_stage": two_stage,
        "cem_stages": stage_constant,
        "independent_stages": stages(True),
        "unex_rl": stages(False),
        "unex_rl_ce": stages(False, cascade_gradient=True),
    }


def _states(sim: SimulatorV2, run: RunConfig, rng: np.random.Generator, n: int = 512) -> torch.Tensor:
    """Fusion states of session starts and of sessions in progress (random depth and engagement)."""
    sessions = sim.sessions(n, rng, run.session, run.n_candidates)
    sessions.depth = rng.integers(0, 20, n)
    requests = sessions.requests()
    return to_batch(sim, requests, sessions, rng).state


def fusion_summary(policy: CascadePolicy, sim: SimulatorV2, run: RunConfig, seed: int) -> dict[str, Any]:
    """The served fusion weights in a scale-free form: Σ_j w_j·log(p_j + b_j) ranks the same when every
    w_j is multiplied by one constant, so powers are reported as shares w_j / Σ_k w_k (mean and spread
    over a sample of session states), with the biases as they are."""
    rng = np.random.default_rng([seed, 404])
    state = _states(sim, run, rng)
    with torch.no_grad():
        action = policy.fusion(state, torch.zeros(state.shape[0], policy.fusion.action_dim)).action.numpy()
    n = action.shape[1] // 2
    shares = action[:, :n] / (action[:, :n].sum(1, keepdims=True) + 1e-12)
    names = list(sim.config.objectives)
    return {
        "power_share_mean": dict(zip(names, shares.mean(0).round(4).tolist(), strict=True)),
        "power_share_std": dict(zip(names, shares.std(0).round(4).tolist(), strict=True)),
        "bias_mean": dict(zip(names, action[:, n:].mean(0).round(4).tolist(), strict=True)),
        "power_sum_mean": float(action[:, :n].sum(1).mean()),
    }


def base_policy(seed: int, cfg: V2Config) -> tuple[SimulatorV2, CascadePolicy, float]:
    """World `seed`, the policy every method of the seed starts from (stage heads trained supervised, RND
    predictor trained; powers with a fixed sum) and the RND novelty of typical states."""
    sim = SimulatorV2(v2_sim_config(), seed=seed, world=cfg.world)
    base_rng = method_stream(seed, "base")
    torch.manual_seed(torch_seed(seed, "base"))
    config = replace(PolicyConfig.from_sim(sim.config), scale_free_powers=True, stage_score=cfg.stage_score)
    base = CascadePolicy(config)
    train_heads(base, sim, base_rng, steps=cfg.head_steps)
    train_rnd(base.rnd, lambda n: _states(sim, cfg.run, base_rng, n), cfg.rnd_steps)
    with torch.no_grad():
        reference = float(base.rnd(_states(sim, cfg.run, base_rng)).mean())
    return sim, base, reference


def run_seed(seed: int, cfg: V2Config, runs: Path) -> dict[str, dict[str, Any]]:
    """Every method of `cfg.methods` on world `seed`; writes `<runs>/<seed>/<method>/metrics.json`."""
    torch.set_num_threads(cfg.threads)
    sim, base, reference = base_policy(seed, cfg)
    thresholds = constraint_thresholds(base, sim, cfg.run, seed)
    trainers = _trainers(sim, cfg, reference, seed, thresholds, runs / str(seed) if cfg.resume else None)
    out: dict[str, dict[str, Any]] = {}
    for name in cfg.methods:
        folder = runs / str(seed) / name
        if cfg.resume and (folder / "metrics.json").exists():  # a finished (seed, method) of an earlier run
            out[name] = json.loads((folder / "metrics.json").read_text()) | {"resumed": True}
            continue
        policy = copy.deepcopy(base)
        rng = method_stream(seed, name)
        torch.manual_seed(torch_seed(seed, name))
        started = time.perf_counter()
        log, config = trainers[name](policy, rng)
        seconds = time.perf_counter() - started
        policy.eval()
        metrics = evaluate(policy, sim, cfg.run, users=cfg.eval_users, seed=10_000 + seed)
        metrics["reward_per_request"] = metrics["return"] / metrics["depth"]
        metrics["constraints_met"] = constraints_met(metrics, thresholds, sim.business_weights)
        record = {
            "metrics": metrics,
            "seconds": seconds,
            "fusion": fusion_summary(policy, sim, cfg.run, seed),
            "config": config,
            "log": asdict(log) if log else None,
            "thresholds": thresholds,
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(record, default=str))
        out[name] = record
    return out


def run_experiment(cfg: V2Config, runs: Path, workers: int = 1) -> dict[str, Any]:
    """Run every seed (in `workers` processes); `<runs>/all.json` holds every number the report uses."""
    started, cpu = time.perf_counter(), time.process_time()
    runs.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.seeds)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            per_seed = dict(zip(seeds, pool.map(run_seed, seeds, [cfg] * len(seeds), [runs] * len(seeds)), strict=True))
    else:
        per_seed = {seed: run_seed(seed, cfg, runs) for seed in seeds}
    record = experiment_record(cfg, per_seed, time.perf_counter() - started, _load())
    record["cpu_seconds_main"] = time.process_time() - cpu
    record["niceness"] = os.nice(0)  # how it was run, for the command line the report prints
    (runs / "all.json").write_text(json.dumps(record, default=str))
    return record


def small(cfg: V2Config) -> V2Config:
    """A configuration small enough for a test (a few seconds per method)."""
    run = replace(cfg.run, steps=3, sessions=8, n_candidates=30, stage_sizes=(20, 15, 10))
    return replace(
        cfg,
        run=run,
        head_steps=3,
        rnd_steps=3,
        eval_users=16,
        cem=SessionCEMConfig(iterations=1, population=3, elite=2, users=8),
        grid=GridConfig(candidates=3, users=24, min_group_users=2),
        contextual_cem=ContextualCEMConfig(
            iterations=1, population=3, elite=2, users_per_segment=2, validation_users_per_segment=2
        ),
        cem_immediate=CEMConfig(iterations=1, population=3, elite=2, requests=8),
    )


def collect_runs(runs: Path, cfg: V2Config, seconds: float, seeds: tuple[int, ...] = ()) -> dict[str, Any]:
    """The record `run_experiment` writes, rebuilt from `<runs>/<seed>/<method>/metrics.json` of every seed
    whose methods all finished (runs split over several processes, or stopped early: the seeds that are
    complete are reported, the rest are not, and the report names the seeds it used); only `seeds` if given."""
    per_seed: dict[str, Any] = {}
    folders = (p for p in runs.iterdir() if p.is_dir() and p.name.isdigit() and (not seeds or int(p.name) in seeds))
    for folder in sorted(folders, key=lambda p: int(p.name)):
        files = {m: folder / m / "metrics.json" for m in cfg.methods}
        if all(f.exists() for f in files.values()):
            per_seed[folder.name] = {m: json.loads(f.read_text()) for m, f in files.items()}
    seeds = tuple(int(s) for s in per_seed)
    stamps = [f.stat().st_mtime for f in runs.glob("*/*/metrics.json")]
    span = max(stamps) - min(stamps) if stamps else 0.0
    # A re-render cannot know the load its runs saw: say so, with the load at rendering.
    load = f"of the runs not recorded by a re-render; at rendering {_load()}"
    # Without a measured time: the span between the first and last result file, said to be one.
    record = experiment_record(replace(cfg, seeds=seeds), per_seed, seconds or span, load)
    record["seconds_is_span"] = not seconds
    return record


def experiment_record(cfg: V2Config, per_seed: dict[Any, Any], seconds: float, load: str) -> dict[str, Any]:
    """What the report renders: the configuration, each seed's rows (by seed as a string), time and machine."""
    return {
        "seconds": seconds,
        "load": load,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "per_seed": {str(k): v for k, v in per_seed.items()},
    }


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())
