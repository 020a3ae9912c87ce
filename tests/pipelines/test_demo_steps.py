"""`cascade train` → `cascade export` → `cascade evaluate`: the demo recipe one step at a time."""

from __future__ import annotations

import json
from pathlib import Path

from models.nets.checkpoint import CHECKPOINT_FILE
from pipelines.demo import TRAINING_FILE, evaluate_bundle, export_trained, train_to_folder
from service.bundle import load_bundle
from tests.tiny_policy import TINY


def test_a_trained_folder_exports_to_a_bundle_the_service_loads_and_evaluates(tmp_path: Path) -> None:
    trained = train_to_folder(tmp_path / "trained", TINY)

    manifest = export_trained(tmp_path / "trained", tmp_path / "bundle", "demo", "v1")
    loaded = load_bundle(tmp_path / "bundle")
    values = evaluate_bundle(tmp_path / "bundle", requests=20, seed=1)

    assert (tmp_path / "trained" / CHECKPOINT_FILE).is_file()
    assert json.loads((tmp_path / "trained" / TRAINING_FILE).read_text())["seed"] == TINY.seed
    assert (manifest.policy, manifest.version, loaded.version) == ("demo", "v1", "v1")
    assert manifest.parity.passed
    assert manifest.stage_sizes == list(TINY.stage_sizes)
    assert manifest.training == json.loads(json.dumps(trained.report, default=str))
    assert set(values) == {"policy", "uniform", "random"}
    # Same policy, same world, same requests: evaluating twice gives the same numbers.
    assert evaluate_bundle(tmp_path / "bundle", requests=20, seed=1) == values
