"""The model store on disk: `<store>/<policy>/<version>/` holds one bundle each.

`publish` copies a finished bundle in and marks it active. The active version is a small
pointer file `<store>/<policy>/ACTIVE`, replaced atomically (write + rename) so a reader
sees the old or the new name, never half of one (contracts/versions.py).

Beside it, `ROUTING.json` is the durable routing truth of the folder (a policy, or the item tables):
active, previous, canary and shadow versions, the revision, and the history of every version ever
routed. Every routing change writes it before it is acknowledged, so Redis losing its data loses
nothing (service/routing.py restores Redis from it), and retention knows which versions were once
served: only those may be retired, never one staged for a later activation or one that was refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from contracts.manifest import MANIFEST_FILE, Manifest
from contracts.routing import RoutingState
from contracts.versions import ACTIVE_POINTER, read_pointer, write_pointer

ROUTING_FILE: Final = "ROUTING.json"
_ROUTING_LOCK: Final = ".routing.lock"


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
    """Point the policy at an existing version, atomically (an activation of its durable routing)."""
    if not (bundle_path(store, policy, version) / MANIFEST_FILE).is_file():
        raise StoreError(f"no bundle {policy}/{version} in {store}")
    update_routing(store / policy, lambda state: state.activated(version))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer of a folder's routing at a time, across the workers and replicas sharing the store."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / _ROUTING_LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_file(folder: Path) -> tuple[RoutingState, list[str]]:
    try:
        fields: dict[str, Any] = json.loads((folder / ROUTING_FILE).read_text())
    except (OSError, ValueError):
        return RoutingState(), []
    return RoutingState.from_dict(fields), [str(v) for v in fields.get("history", [])]


def read_routing(folder: Path) -> RoutingState:
    """The durable routing of a policy (or item table) folder; empty when it has never been routed."""
    state, _ = _reconciled(folder)
    return state


def routing_history(folder: Path) -> list[str]:
    """Every version the folder's routing ever named, oldest first (what retention may retire)."""
    _, history = _reconciled(folder)
    return history


def _reconciled(folder: Path) -> tuple[RoutingState, list[str]]:
    state, history = _read_file(folder)
    pointer = read_pointer(folder)
    if pointer is not None and pointer != state.active:
        # ACTIVE moved without the routing file (an older writer, a hand edit): that is an activation.
        state = state.activated(pointer)
    return state, _with(history, state)


def _with(history: list[str], state: RoutingState) -> list[str]:
    named = [v for v in (state.previous, state.active, state.canary, state.shadow) if v]
    return [*history, *(v for v in dict.fromkeys(named) if v not in history)]


def _write(folder: Path, state: RoutingState, history: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".routing-")
    with os.fdopen(fd, "w") as handle:
        json.dump({**state.to_dict(), "history": history}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / ROUTING_FILE)
    if state.active is not None and read_pointer(folder) != state.active:
        write_pointer(folder, state.active)


def update_routing(folder: Path, change: Callable[[RoutingState], RoutingState]) -> RoutingState:
    """Apply `change` to the durable routing under the folder's lock and write the result."""
    with _locked(folder):
        state, history = _reconciled(folder)
        changed = change(state)
        _write(folder, changed, _with(history, changed))
        return changed


def record_routing(folder: Path, state: RoutingState) -> RoutingState:
    """Make the durable copy say `state` (a change made in Redis, which is the authority while it has one).

    The revision kept is the larger of the two, so a restore from this copy always lands above every
    revision any worker has seen.
    """
    with _locked(folder):
        current, history = _reconciled(folder)
        recorded = replace(state, revision=max(state.revision, current.revision))
        _write(folder, recorded, _with(history, state))
        return recorded


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
    """Delete retired versions beyond the newest `keep` of them; return what went.

    Retired: routed once (in the durable history), routed nowhere now, not in `protect`. A version never
    routed is never deleted and never counted: it may be staged for the next activation, or have been
    refused at verification (it never served, so it cannot take the place of one that did).
    """
    folder = store / policy
    state = read_routing(folder)
    in_use = protect | state.versions_in_use()
    on_disk = versions(store, policy)
    routed = set(routing_history(folder))
    retired = [v for v in on_disk if v in routed and v not in in_use]
    removed = retired[: max(0, len(retired) - keep)]
    for version in removed:
        shutil.rmtree(bundle_path(store, policy, version), ignore_errors=True)
    return removed
