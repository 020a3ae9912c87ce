"""Signing bundles at publish time (Ed25519 over manifest.json; the format is contracts/signing.py).

`cascade publish --signing-key` (or CASCADE_SIGNING_KEY) names the operator's private key. The
embedded demo, with no key given, makes a local pair in `<store>/.signing/` once and signs with it,
so `make run` works out of the box while every bundle is still checked for corruption.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from contracts.manifest import Manifest
from contracts.signing import demo_private_key, demo_public_key, signed_bytes, write_signature
from contracts.store import bundle_path, publish, set_active


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def write_key_pair(private: Path, public: Path) -> Ed25519PrivateKey:
    """A new Ed25519 pair as PEM files (the private one readable by its owner only)."""
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    public.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return key


def store_signing_key(store: Path) -> Ed25519PrivateKey | None:
    """The store's local demo key, if it has one."""
    path = demo_private_key(store)
    return load_signing_key(path) if path.is_file() else None


def demo_signing_key(store: Path) -> Ed25519PrivateKey:
    """The store's local demo key, made on first use."""
    return store_signing_key(store) or write_key_pair(demo_private_key(store), demo_public_key(store))


def signing_key(store: Path, path: Path | None = None) -> Ed25519PrivateKey:
    """The key to publish with: the given file, else CASCADE_SIGNING_KEY, else the store's demo key."""
    given = path or (Path(os.environ["CASCADE_SIGNING_KEY"]) if os.environ.get("CASCADE_SIGNING_KEY") else None)
    return load_signing_key(given) if given is not None else demo_signing_key(store)


def sign_bundle(bundle_dir: Path, key: Ed25519PrivateKey) -> None:
    """Sign the manifest's exact bytes; the signature lands beside it."""
    write_signature(bundle_dir, key.sign(signed_bytes(bundle_dir)))


def publish_signed(bundle_dir: Path, store: Path, key: Ed25519PrivateKey, activate: bool = True) -> Manifest:
    """Copy a bundle into the store, sign the stored copy, then (optionally) make it active."""
    manifest = publish(bundle_dir, store, activate=False)
    sign_bundle(bundle_path(store, manifest.policy, manifest.version), key)
    if activate:
        set_active(store, manifest.policy, manifest.version)
    return manifest
