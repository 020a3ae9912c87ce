"""A bundle is served only whole and verified: bad hashes, broken graphs and wrong widths are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from contracts.manifest import MANIFEST_FILE, sha256_of
from contracts.store import active_version, bundle_path, set_active
from service.bundle import BundleError, load_bundle
from service.registry import Registry
from tests.versions import resign


@pytest.fixture
def bundle_copy(store: Path, tmp_path: Path) -> Path:
    """A private copy of the demo store, so a test may break its bundle freely."""
    private = tmp_path / "store"
    shutil.copytree(store, private)
    return bundle_path(private, "demo", active_version(private, "demo"))


def _rewrite_manifest(bundle: Path, edit: dict[str, object]) -> None:
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest.update(edit)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_verified_bundle_loads_and_names_its_version(bundle_copy: Path) -> None:
    loaded = load_bundle(bundle_copy)

    assert loaded.version == bundle_copy.name
    assert loaded.manifest.parity.passed
    assert loaded.manifest.parity.max_abs_error <= loaded.manifest.parity.tolerance <= 1e-4


def test_a_graph_whose_bytes_changed_fails_its_sha256(bundle_copy: Path) -> None:
    with (bundle_copy / "cascade.onnx").open("ab") as graph:
        graph.write(b"\0")

    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_a_truncated_graph_is_refused_even_with_a_matching_hash(bundle_copy: Path) -> None:
    graph = bundle_copy / "cascade.onnx"
    graph.write_bytes(graph.read_bytes()[:2000])
    files = json.loads((bundle_copy / MANIFEST_FILE).read_text())["files"]
    _rewrite_manifest(bundle_copy, {"files": {**files, "cascade.onnx": sha256_of(graph)}})

    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        load_bundle(bundle_copy)


def test_a_graph_narrower_than_the_manifest_schema_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    schema = manifest["feature_schema"]
    schema["item_columns"] = [*schema["item_columns"], "item_extra"]
    _rewrite_manifest(bundle_copy, {"feature_schema": schema})

    with pytest.raises(BundleError, match="item_features"):
        load_bundle(bundle_copy)


def test_a_manifest_that_breaks_the_contract_is_refused(bundle_copy: Path) -> None:
    _rewrite_manifest(bundle_copy, {"stages": [{"name": "matching", "keep": 10}]})

    with pytest.raises(BundleError, match="invalid manifest"):
        load_bundle(bundle_copy)


def test_a_failed_load_leaves_the_serving_version_in_place(bundle_copy: Path) -> None:
    store = bundle_copy.parents[1]
    registry = Registry(store)
    good = registry.load_active("demo")
    broken = bundle_copy.parent / "broken"
    shutil.copytree(bundle_copy, broken)
    _rewrite_manifest(broken, {"version": "broken"})
    resign(store, broken)  # signed: the load gets past the signature and fails on the hash
    with (broken / "cascade.onnx").open("ab") as graph:
        graph.write(b"\0")
    set_active(store, "demo", "broken")

    with pytest.raises(BundleError):
        registry.load_active("demo")

    assert registry.get("demo") is good
    assert "sha256" in (registry.error("demo") or "")
