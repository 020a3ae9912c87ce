"""One trained method of the session experiment (models/experiments/session_methods.py) as a bundle."""

from __future__ import annotations

from pathlib import Path

from contracts.manifest import Exploration, FusionAction, Stage
from export.exporter import export_bundle
from models.algorithms.demo_policy import feature_schema
from models.experiments.session_methods import ExperimentConfig
from models.nets.cascade import STAGES, CascadePolicy


def export_method_bundle(policy: CascadePolicy, cfg: ExperimentConfig, folder: Path, name: str, seed: int) -> None:
    """Through export/: ONNX graph + manifest with the parity check (a bundle the service loads)."""

    export_bundle(
        policy,
        folder,
        policy_name=name.replace(".", "_"),
        version=f"seed{seed}",
        feature_schema=feature_schema(cfg.sim),
        stages=[Stage(name=s, keep=keep) for s, keep in zip(STAGES, cfg.run.stage_sizes, strict=True)],
        fusion_action_spec=FusionAction(
            names=policy.config.action_names,
            low=policy.config.fusion_low,
            high=policy.config.fusion_high,
            exploration=Exploration(probability=0.1, noise_clip=cfg.run.noise_clip),
        ),
        training={"trainer": f"models.experiments.session_methods:{name}", "seed": seed},
        default_k=cfg.run.k,
    )
