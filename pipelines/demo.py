"""`cascade demo`: train the demo policy, export it with a parity check, publish it active into a store.

The training is models/algorithms/demo_policy.py; this module adds what crosses parts: the exporter
(export/exporter.py), the store (contracts/store.py) and the item table the simulator's catalogue fills.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from contracts.manifest import Manifest
from contracts.store import publish
from export.exporter import export_bundle
from models.algorithms.demo_policy import DemoConfig, DemoTraining, bundle_description, train_demo_policy
from models.sim.items import write_catalogue


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
