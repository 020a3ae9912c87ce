"""The signed-manifest format shared by the exporter (signs) and the loader (verifies).

A bundle's `manifest.json` lists the sha256 of every other file, so a signature over its exact
bytes covers the whole bundle: the loader checks the signature first and trusts a hash only after.
The signature is Ed25519 (RFC 8032) over those bytes, stored base64-encoded in `manifest.sig` beside
the manifest. The key pair is the operator's (CASCADE_SIGNING_KEY to publish,
CASCADE_SIGNING_PUBLIC_KEY to serve); the embedded demo keeps a local pair in `<store>/.signing/`,
which protects against corruption but not against someone who can write the store.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Final

from contracts.manifest import MANIFEST_FILE

SIGNATURE_FILE: Final = "manifest.sig"
DEMO_KEY_DIR: Final = ".signing"  # inside the store; not a policy name, so never listed as one
PRIVATE_KEY_FILE: Final = "ed25519.pem"
PUBLIC_KEY_FILE: Final = "ed25519.pub.pem"


class SignatureFormatError(Exception):
    """The bundle has no readable signature."""


def signed_bytes(bundle_dir: Path) -> bytes:
    """The bytes a bundle's signature covers: its manifest, exactly as stored."""
    return (bundle_dir / MANIFEST_FILE).read_bytes()


def read_signature(bundle_dir: Path) -> bytes:
    """The raw 64-byte signature of a bundle."""
    path = bundle_dir / SIGNATURE_FILE
    try:
        return base64.b64decode(path.read_bytes().strip(), validate=True)
    except FileNotFoundError:
        raise SignatureFormatError(f"{bundle_dir} is not signed (no {SIGNATURE_FILE})") from None
    except (OSError, binascii.Error) as exc:
        raise SignatureFormatError(f"{path} is not a base64 signature: {exc}") from exc


def write_signature(bundle_dir: Path, signature: bytes) -> None:
    (bundle_dir / SIGNATURE_FILE).write_bytes(base64.b64encode(signature) + b"\n")


def demo_public_key(store: Path) -> Path:
    """Where the embedded demo keeps the public half of its local key pair."""
    return store / DEMO_KEY_DIR / PUBLIC_KEY_FILE


def demo_private_key(store: Path) -> Path:
    return store / DEMO_KEY_DIR / PRIVATE_KEY_FILE
