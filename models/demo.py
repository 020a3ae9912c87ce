"""The demo policy: train a small CascadePolicy on the simulator, export it, publish it (`cascade demo`).

Training, in order, all seeded:
1. supervised: the three stages' prediction heads on sampled simulator responses (models/supervised.py);
2. RND: the predictor on simulated user states, so seen users have a low novelty bonus (models/rnd.py);
3. A3C with γ = 0: the fusion actor and the three stage actors as Gaussian policies on a shared request
   reward, stage actors served at their mean (models/a3c.py), on pools of 200 candidates.
Then the bundle is exported with a parity check (export/exporter.py) and published active into the store.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from contracts.manifest import Exploration, FeatureSchema, FusionAction, Manifest, Stage
from contracts.store import publish
from export.exporter import export_bundle
from models.a3c import A3CConfig, train_actors
from models.cascade import STAGES, CascadePolicy, PolicyConfig
from models.rnd import train_rnd
from models.rollout import evaluate_fusion, user_states
from models.sim.config import SimConfig
from models.sim.items import write_catalogue
from models.sim.simulator import Simulator
from models.supervised import train_heads


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    sim: SimConfig = field(default_factory=SimConfig)
    stage_sizes: tuple[int, int, int] = (500, 100, 50)  # served: matching, pre-ranking, ranking keep
    k: int = 10
    head_steps: int = 300
    rnd_steps: int = 300
    a3c: A3CConfig = field(default_factory=lambda: A3CConfig(steps=300, actor_lr=5e-3))
    exploration_probability: float = 0.1
    noise_clip: float = 2.0
    eval_requests: int = 300  # full-size requests (candidates_per_request, served stage sizes) for the manifest
    threads: int = 2


@dataclass
class DemoTraining:
    policy: CascadePolicy
    simulator: Simulator
    report: dict[str, object]  # goes into the manifest's `training`
    evaluation: dict[str, object]  # goes into the manifest's `evaluation`


@contextmanager
def _seeded_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch and pin its thread count for the block, restoring the caller's RNG and threads after."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous_threads)


def train_demo_policy(config: DemoConfig | None = None) -> DemoTraining:
    """Train the demo policy (heads, RND, A3C) on a seeded simulator; deterministic for a given config."""
    config = config or DemoConfig()
    with _seeded_torch(config.seed, config.threads):
        started = time.perf_counter()
        sim = Simulator(config.sim, seed=config.seed)
        rng = np.random.default_rng([config.seed, 2])
        policy = CascadePolicy(PolicyConfig.from_sim(config.sim))

        heads = train_heads(policy, sim, rng, steps=config.head_steps)
        rnd_losses = train_rnd(policy.rnd, lambda n: user_states(sim, n, rng), config.rnd_steps)
        a3c = train_actors(policy, sim, rng, config.a3c)
        policy.eval()
        seconds = time.perf_counter() - started

        evaluation = evaluate_fusion(
            policy,
            sim,
            n_requests=config.eval_requests,
            n_candidates=config.sim.candidates_per_request,
            stage_sizes=config.stage_sizes,
            k=config.k,
            seed=config.seed + 1,
        )
    window = max(1, len(a3c.rewards) // 10)
    report: dict[str, object] = {
        "trainer": "models.demo",
        "seed": config.seed,
        "seconds": round(seconds, 2),
        "torch": torch.__version__,
        "simulator": asdict(config.sim),
        "heads": {"steps": config.head_steps, "held_out_loss": [heads.held_out_before, heads.held_out_after]},
        "rnd": {"steps": config.rnd_steps, "loss": [rnd_losses[0], rnd_losses[-1]]},
        "a3c": {
            **asdict(config.a3c),
            "gamma": 0.0,
            "reward_first": float(np.mean(a3c.rewards[:window])),
            "reward_last": float(np.mean(a3c.rewards[-window:])),
        },
    }
    return DemoTraining(
        policy=policy,
        simulator=sim,
        report=report,
        evaluation={
            "expected_request_reward": evaluation,
            "requests": config.eval_requests,
            "candidates": config.sim.candidates_per_request,
        },
    )


def feature_schema(sim: SimConfig) -> FeatureSchema:
    return FeatureSchema(
        user_columns=sim.user_columns,
        context_columns=sim.context_columns,
        item_columns=sim.item_columns,
        objectives=list(sim.objectives),
    )


def bundle_description(policy: CascadePolicy, config: DemoConfig) -> tuple[FeatureSchema, list[Stage], FusionAction]:
    """Feature schema, stages and fusion action spec of a demo bundle, from the policy and the config."""
    stages = [Stage(name=name, keep=keep) for name, keep in zip(STAGES, config.stage_sizes, strict=True)]
    fusion = FusionAction(
        names=policy.config.action_names,
        low=policy.config.fusion_low,
        high=policy.config.fusion_high,
        exploration=Exploration(probability=config.exploration_probability, noise_clip=config.noise_clip),
    )
    return feature_schema(config.sim), stages, fusion


def build_demo(
    store: Path,
    policy: str = "demo",
    seed: int = 0,
    version: str | None = None,
    config: DemoConfig | None = None,
    item_table: bool = True,
) -> Manifest:
    """Train the demo policy, export it with a parity check and publish it as the active version in `store`.

    `version` defaults to the UTC time (e.g. 20250101T120000.123456Z); `config` (tests: fewer steps)
    overrides the default training settings, its seed replaced by `seed`. With `item_table`, the
    simulator's catalogue is written beside it as the active item table (same version name), so
    requests can name candidates by id.
    """
    config = replace(config or DemoConfig(), seed=seed)
    return publish_demo(train_demo_policy(config), store, config, policy, version, item_table)


def publish_demo(
    trained: DemoTraining,
    store: Path,
    config: DemoConfig,
    policy: str = "demo",
    version: str | None = None,
    item_table: bool = True,
) -> Manifest:
    """Export a trained demo policy with a parity check, publish it active, and write its item table."""
    schema, stages, fusion = bundle_description(trained.policy, config)
    version = version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    with tempfile.TemporaryDirectory(prefix="cascade-demo-") as tmp:
        bundle = Path(tmp) / version
        export_bundle(
            trained.policy,
            bundle,
            policy_name=policy,
            version=version,
            feature_schema=schema,
            stages=stages,
            fusion_action_spec=fusion,
            training=trained.report,
            evaluation=trained.evaluation,
            default_k=config.k,
        )
        manifest = publish(bundle, store, activate=True)
    if item_table:
        write_catalogue(store, trained.simulator, config.seed, version=version)
    return manifest
