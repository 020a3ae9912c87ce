"""Making more versions of the demo bundle in a private store, for swap and routing tests.

Each copy is a real, verifiable bundle (same graph, same hashes); only its version name differs,
which is what the registry, the routing state and every response and record key on.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from contracts.manifest import MANIFEST_FILE
from contracts.store import active_version, bundle_path

# The admin token of the stores these tests build.
TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def private_store(store: Path, target: Path) -> Path:
    """A copy of a store that a test may change freely."""
    shutil.copytree(store, target)
    return target


def add_version(store: Path, version: str, policy: str = "demo") -> Path:
    """Copy the active bundle under a new version name (its manifest names the new version)."""
    source = bundle_path(store, policy, active_version(store, policy))
    target = bundle_path(store, policy, version)
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    manifest["version"] = version
    manifest["created_at"] = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    (target / MANIFEST_FILE).write_text(json.dumps(manifest))
    resign(store, target)
    return target


def corrupt(bundle: Path) -> None:
    """Change the graph's bytes so its sha256 no longer matches the manifest."""
    with (bundle / "cascade.onnx").open("ab") as graph:
        graph.write(b"\0")


def resign(store: Path, bundle: Path) -> None:
    """Sign a bundle whose manifest a test changed, with the store's own demo key (if it has one)."""
    from export.signing import sign_bundle, store_signing_key

    key = store_signing_key(store)
    if key is not None:
        sign_bundle(bundle, key)
