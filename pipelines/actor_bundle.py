"""`cascade export-actors`: one bundle with the cascade graph plus the ResAct and EnhancedRL actor graphs.

Trains, on one simulated world with session features (so the bundle's context columns carry them):
the cascade's prediction heads (supervised), ResAct offline on a log of the Gaussian behaviour policy, and
EnhancedRL online; exports the cascade through export/exporter.py, then adds `resact.onnx` and
`item_fusion.onnx` with export/actor_graphs.py (signature + parity, recorded in the manifest's `actors`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from contracts.manifest import Manifest
from models.algorithms.enhanced_rl import EnhancedActor, EnhancedRLConfig, train_enhanced_rl
from models.algorithms.resact import ResActConfig, make_resact, train_resact
from models.algorithms.supervised import train_heads
from models.env.offline_data import BehaviourPolicy, OfflineConfig, collect
from models.nets.cascade import CascadePolicy, PolicyConfig
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class ActorBundleConfig:
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    resact: ResActConfig = field(default_factory=lambda: ResActConfig(steps=1000))
    enhanced: EnhancedRLConfig = field(default_factory=lambda: EnhancedRLConfig(steps=100))
    head_steps: int = 100
    stage_sizes: tuple[int, int, int] = (40, 30, 20)


def build_actor_bundle(out_dir: Path, *, seed: int = 0, config: ActorBundleConfig | None = None) -> Manifest:
    """Train the three pieces on seed `seed`'s world and write one verified bundle to `out_dir`."""
    from contracts.manifest import Exploration, FusionAction, Stage
    from export.actor_graphs import add_actor_graphs
    from export.exporter import export_bundle
    from models.algorithms.demo_policy import feature_schema
    from models.experiments.resact_offline import layout_of
    from models.nets.cascade import STAGES

    cfg = config or ActorBundleConfig()
    torch.manual_seed(seed)
    off = cfg.offline
    sim = Simulator(off.sim, seed=seed)
    rng = np.random.default_rng([seed, 31])
    pc = PolicyConfig.from_sim(off.sim)
    cascade = CascadePolicy(pc)
    train_heads(cascade, sim, rng, steps=cfg.head_steps)
    schema = feature_schema(off.sim)
    export_bundle(
        cascade,
        out_dir,
        policy_name="actors",
        version=f"seed{seed}",
        feature_schema=schema,
        stages=[Stage(name=s, keep=keep) for s, keep in zip(STAGES, cfg.stage_sizes, strict=True)],
        fusion_action_spec=FusionAction(
            names=pc.action_names,
            low=pc.fusion_low,
            high=pc.fusion_high,
            exploration=Exploration(probability=0.1, noise_clip=2.0),
        ),
        training={"trainer": "pipelines.actor_bundle", "seed": seed, "offline": str(off)},
        default_k=off.k,
    )

    behaviour = BehaviourPolicy.make(pc, off, seed)
    log = collect(sim, behaviour, off, rng)
    resact = make_resact(pc.state_dim, behaviour.low, behaviour.high, layout_of(off), cfg.resact)
    train_resact(resact, log, cfg.resact, seed)
    resact.eval()

    enhanced_cfg = replace(cfg.enhanced, offline=off)
    actor = EnhancedActor(
        pc.state_dim, off.sim.item_dim, pc.n_objectives, behaviour.low, behaviour.high, enhanced_cfg.hidden
    )
    train_enhanced_rl(actor, sim, rng, enhanced_cfg)
    actor.eval()
    std = (enhanced_cfg.explore_std * (behaviour.high - behaviour.low)).tolist()
    return add_actor_graphs(out_dir, resact=resact, n_draws=cfg.resact.n_draws, item_fusion=actor, exploration_std=std)
