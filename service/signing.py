"""Verifying a bundle's Ed25519 manifest signature before any of its hashes is trusted (contracts/signing.py).

Without a configured public key the loader falls back to the store's local demo key (`cascade demo`
makes one); with neither, and signing required (the default), every bundle is refused: a server that
cannot check signatures says so instead of serving whatever lies in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from contracts.signing import SignatureFormatError, demo_public_key, read_signature, signed_bytes


class SignatureError(Exception):
    """The bundle is unsigned, wrongly signed, or no key to check it with is configured."""


@dataclass(frozen=True)
class Trust:
    """How this server checks bundles: the public key, and whether a signature is required."""

    public_key: Ed25519PublicKey | None
    required: bool = True
    source: str = "none"

    def verify(self, bundle_dir: Path) -> None:
        """Raise SignatureError unless the manifest is signed by the trusted key (or signing is off)."""
        if not self.required:
            return
        if self.public_key is None:
            raise SignatureError(
                "no public key to verify bundle signatures: set CASCADE_SIGNING_PUBLIC_KEY "
                "(or CASCADE_REQUIRE_SIGNATURE=false to serve unsigned bundles)"
            )
        try:
            self.public_key.verify(read_signature(bundle_dir), signed_bytes(bundle_dir))
        except SignatureFormatError as exc:
            raise SignatureError(str(exc)) from exc
        except InvalidSignature:
            raise SignatureError(f"{bundle_dir}: manifest signature does not verify with {self.source}") from None
        except OSError as exc:
            raise SignatureError(f"{bundle_dir}: cannot read the manifest: {exc}") from exc


def load_trust(public_key: Path | None, required: bool, store: Path) -> Trust:
    """The configured key, else the store's demo key if it has one, else none (then every bundle is refused)."""
    path = public_key or demo_public_key(store)
    if public_key is None and not path.is_file():
        return Trust(None, required)
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot read the signing public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key")
    return Trust(key, required, str(path))
