"""Signed bundles: the loader checks the manifest's Ed25519 signature before it trusts any hash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.manifest import MANIFEST_FILE, sha256_of
from contracts.signing import SIGNATURE_FILE
from export.signing import sign_bundle, write_key_pair
from service.app import create_app
from service.bundle import BundleError
from service.registry import Registry
from service.settings import Settings
from service.signing import load_trust
from tests.versions import add_version, private_store

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def _flip_a_byte_and_rehash(bundle: Path) -> None:
    """What someone who can write the store does: change a graph and fix its sha256 in the manifest."""
    graph = bundle / "cascade.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["files"]["cascade.onnx"] = sha256_of(graph)
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture
def own_store(store: Path, tmp_path: Path) -> Path:
    return private_store(store, tmp_path / "store")


def test_a_rehashed_bundle_is_refused(own_store: Path) -> None:
    tampered = add_version(own_store, "v-tampered")
    _flip_a_byte_and_rehash(tampered)

    with pytest.raises(BundleError, match="signature"):
        Registry(own_store).load("demo", "v-tampered")


def test_unsigned_and_foreign_signed_bundles_are_refused(own_store: Path, tmp_path: Path) -> None:
    unsigned = add_version(own_store, "v-unsigned")
    (unsigned / SIGNATURE_FILE).unlink()
    foreign = add_version(own_store, "v-foreign")
    sign_bundle(foreign, write_key_pair(tmp_path / "k.pem", tmp_path / "k.pub.pem"))
    registry = Registry(own_store)

    with pytest.raises(BundleError, match="not signed"):
        registry.load("demo", "v-unsigned")
    with pytest.raises(BundleError, match="does not verify"):
        registry.load("demo", "v-foreign")
    assert registry.load("demo", add_version(own_store, "v-good").name).version == "v-good"


def test_signing_off_only_explicitly(own_store: Path, tmp_path: Path) -> None:
    (add_version(own_store, "v-unsigned") / SIGNATURE_FILE).unlink()
    no_key_store = tmp_path / "empty"
    no_key_store.mkdir()

    assert Registry(own_store, trust=load_trust(None, False, own_store)).load("demo", "v-unsigned")
    with pytest.raises(Exception, match="CASCADE_SIGNING_PUBLIC_KEY"):
        load_trust(None, True, no_key_store).verify(own_store / "demo" / "v-unsigned")


def test_admin_refuses_a_tampered_bundle_with_422(settings: Settings, own_store: Path) -> None:
    _flip_a_byte_and_rehash(add_version(own_store, "v-tampered"))
    admin = settings.model_copy(update={"store": own_store, "admin_token": TOKEN})
    with TestClient(create_app(admin)) as client:
        response = client.post("/v1/admin/policies/demo/activate", json={"version": "v-tampered"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["field"] == "version"
    assert "signature" in response.json()["detail"]


@pytest.fixture
def configured_key_client(settings: Settings, own_store: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A server given its own public key: bundles signed with the store's demo key are not trusted."""
    write_key_pair(tmp_path / "ops.pem", tmp_path / "ops.pub.pem")
    configured = settings.model_copy(
        update={"store": own_store, "admin_token": TOKEN, "signing_public_key": tmp_path / "ops.pub.pem"}
    )
    with TestClient(create_app(configured)) as client:
        yield client, tmp_path / "ops.pem"


def test_a_configured_key_trusts_only_its_own_signatures(configured_key_client: tuple[TestClient, Path]) -> None:
    client, _ = configured_key_client

    assert client.get("/readyz").status_code == 503  # the demo-signed active bundle is not trusted
