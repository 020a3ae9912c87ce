"""The model store on disk: `<store>/<policy>/<version>/` holds one bundle each.

`publish` copies a finished bundle in and marks it active. The active version is a small
pointer file `<store>/<policy>/ACTIVE`, replaced atomically (write + rename) so a reader
sees the old or the new name, never half of one (contracts/versions.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from contracts.manifest import MANIFEST_FILE, Manifest
from contracts.versions import ACTIVE_POINTER, read_pointer, write_pointer


class StoreError(Exception):
    """The store has no usable bundle where one was asked for."""


def bundle_path(store: Path, policy: str, version: str) -> Path:
    """Folder of one version of one policy."""
    return store / policy / version


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse and validate a bundle's manifest.json."""
    path = bundle_dir / MANIFEST_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    return Manifest.model_validate_json(text)


def active_version(store: Path, policy: str) -> str:
    """Name of the version the policy serves, from its ACTIVE pointer."""
    pointer = store / policy / ACTIVE_POINTER
    if not pointer.exists():
        raise StoreError(f"policy '{policy}' has no active version in {store}")
    version = read_pointer(store / policy)
    if version is None:
        raise StoreError(f"{pointer} is empty")
    return version


def versions(store: Path, policy: str) -> list[str]:
    """Versions on disk for a policy, oldest first by their manifest's creation time."""
    root = store / policy
    if not root.is_dir():
        return []
    created: list[tuple[str, str]] = []
    for path in root.iterdir():
        manifest = path / MANIFEST_FILE
        if path.is_dir() and manifest.is_file():
            try:
                created.append((json.loads(manifest.read_text()).get("created_at", ""), path.name))
            except (OSError, ValueError):
                created.append(("", path.name))  # unreadable: oldest, so retention removes it first
    return [name for _, name in sorted(created)]


def set_active(store: Path, policy: str, version: str) -> None:
    """Point the policy at an existing version, atomically."""
    if not (bundle_path(store, policy, version) / MANIFEST_FILE).is_file():
        raise StoreError(f"no bundle {policy}/{version} in {store}")
    write_pointer(store / policy, version)


def publish(bundle_dir: Path, store: Path, activate: bool = True) -> Manifest:
    """Copy a bundle into the store under its manifest's policy/version and optionally activate it."""
    manifest = read_manifest(bundle_dir)
    target = bundle_path(store, manifest.policy, manifest.version)
    if target.exists():
        raise StoreError(f"{manifest.policy}/{manifest.version} is already in {store}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{manifest.version}-"))
    try:
        shutil.copytree(bundle_dir, staging, dirs_exist_ok=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if activate:
        set_active(store, manifest.policy, manifest.version)
    return manifest


def prune(store: Path, policy: str, keep: int, protect: set[str]) -> list[str]:
    """Delete the oldest versions beyond the newest `keep`, never one in `protect`; return what went."""
    on_disk = versions(store, policy)
    protect = protect | {active_version(store, policy)} if (store / policy / ACTIVE_POINTER).exists() else protect
    newest = set(on_disk[-keep:])
    removed = [v for v in on_disk if v not in newest and v not in protect]
    for version in removed:
        shutil.rmtree(bundle_path(store, policy, version), ignore_errors=True)
    return removed
