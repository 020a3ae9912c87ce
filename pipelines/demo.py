"""`cascade demo`: train the demo policy, export it with a parity check, publish it active into a store.

The training is models/algorithms/demo_policy.py; this module adds what crosses parts: the exporter
(export/exporter.py), the store (contracts/store.py) and the item table the simulator's catalogue fills.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from contracts.manifest import Manifest
from contracts.store import read_manifest
from contracts.versions import utc_version
from export.exporter import export_bundle
from export.signing import publish_signed, signing_key
from models.algorithms.demo_policy import DemoConfig, DemoTraining, bundle_description, train_demo_policy
from models.env.rollout import evaluate_fusion
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import CHECKPOINT_FILE, load_checkpoint, read_checkpoint, save_checkpoint
from models.sim.items import write_catalogue
from models.sim.world import trained_world


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
    version = version or utc_version()
    with tempfile.TemporaryDirectory(prefix="cascade-demo-") as tmp:
        bundle = Path(tmp) / version
        export_demo_bundle(trained.policy, bundle, config, policy, version, trained.report, trained.evaluation)
        manifest = publish_signed(bundle, store, signing_key(store), activate=True)
    if item_table:
        write_catalogue(store, trained.simulator, config.seed, version=version)
    return manifest


# `cascade train` → `cascade export` → `cascade evaluate`: the demo recipe one step at a time.
TRAINING_FILE = "training.json"


def train_to_folder(folder: Path, config: DemoConfig) -> DemoTraining:
    """Train the demo policy and keep it in `folder`: `policy.pt` plus what its bundle will record."""
    trained = train_demo_policy(config)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(trained.policy, folder / CHECKPOINT_FILE)
    bundle = {"stage_sizes": list(config.stage_sizes), "k": config.k}
    bundle |= {"exploration_probability": config.exploration_probability, "noise_clip": config.noise_clip}
    record = {"seed": config.seed, "bundle": bundle, "training": trained.report, "evaluation": trained.evaluation}
    (folder / TRAINING_FILE).write_text(json.dumps(record, indent=1, default=str))
    return trained


def export_trained(folder: Path, out: Path, policy: str, version: str | None = None) -> Manifest:
    """Export a policy `train_to_folder` kept into a bundle at `out` (parity-checked), as the demo would."""
    record = json.loads((folder / TRAINING_FILE).read_text())
    bundle = record["bundle"]
    config = replace(
        DemoConfig(),
        seed=record["seed"],
        stage_sizes=tuple(bundle["stage_sizes"]),
        k=bundle["k"],
        exploration_probability=bundle["exploration_probability"],
        noise_clip=bundle["noise_clip"],
    )
    trained = read_checkpoint(folder / CHECKPOINT_FILE)
    return export_demo_bundle(
        trained, out, config, policy, version or utc_version(), record["training"], record["evaluation"]
    )


def export_demo_bundle(
    policy: CascadePolicy,
    out: Path,
    config: DemoConfig,
    policy_name: str,
    version: str,
    training: Mapping[str, object],
    evaluation: Mapping[str, object],
) -> Manifest:
    """A demo policy as a parity-checked bundle at `out`: stages, k and exploration from `config`."""
    schema, stages, fusion = bundle_description(policy, config)
    return export_bundle(
        policy,
        out,
        policy_name=policy_name,
        version=version,
        feature_schema=schema,
        stages=stages,
        fusion_action_spec=fusion,
        training=training,
        evaluation=evaluation,
        default_k=config.k,
    )


def evaluate_bundle(bundle: Path, requests: int, seed: int, k: int = 10) -> dict[str, float]:
    """The simulator's expected request reward of a bundle's fusion mean vs the uniform and random actions.

    The world is the one the bundle was trained in (its manifest's `training.world`, `seed` and `simulator`);
    the requests are fresh ones drawn with `seed`, at the bundle's stage sizes.
    """
    manifest = read_manifest(bundle)
    trained = load_checkpoint(bundle, manifest)
    try:
        sim, sim_config = trained_world(manifest.training)
    except ValueError as exc:
        raise ValueError(f"{bundle}: {exc}") from exc
    sizes = manifest.stage_sizes
    return evaluate_fusion(
        trained,
        sim,
        n_requests=requests,
        n_candidates=sim_config.candidates_per_request,
        stage_sizes=(sizes[0], sizes[1], sizes[2]),
        k=k,
        seed=seed,
    )
