"""A store for one load-test run: a copy of the given one, with one more version of the policy.

The operator user canaries, promotes and rolls back during the run, which needs a second version on
disk, and every routing change prunes old versions: neither may touch the store the user passed.
The extra version is the active bundle under a new name (its manifest names the new version, its
graphs and their hashes are unchanged; it is re-signed with the store's key), so swapping to it
costs a real load, verify and warm-up.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from contracts.manifest import MANIFEST_FILE
from contracts.store import active_version, bundle_path, versions
from export.signing import sign_bundle, store_signing_key

SUFFIX = "-swap"


def copy_with_extra_version(store: Path, target: Path, policy: str = "demo") -> Path:
    """Copy `store` to `target` and add `<active>-swap` for `policy` unless a second version exists."""
    shutil.copytree(store, target)
    active = active_version(target, policy)
    if len(versions(target, policy)) >= 2:
        return target
    source = bundle_path(target, policy, active)
    extra = bundle_path(target, policy, active + SUFFIX)
    shutil.copytree(source, extra)
    manifest = json.loads((extra / MANIFEST_FILE).read_text())
    manifest["version"] = active + SUFFIX
    manifest["created_at"] = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    (extra / MANIFEST_FILE).write_text(json.dumps(manifest))
    # A changed manifest needs a new signature: the store's own demo key signs it; a store signed with
    # another key would have the copy refused by the service, so say so before the run, not during it.
    key = store_signing_key(target)
    if key is None:
        raise SystemExit(f"{store} has no local signing key: put a second signed version of {policy} in it")
    sign_bundle(extra, key)
    return target
