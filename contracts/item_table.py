"""The item table contract: candidate features and MTL predictions by item id, shipped with the store.

A request may name its candidates by id only; the service then looks their rows up in the
active item table instead of parsing them from the body (1,000 ids are a few KB of JSON, their
inline rows over a MB). A table is versioned like a bundle:

    <store>/_items/<version>/items.json       this manifest
    <store>/_items/<version>/ids.json          item ids, row order
    <store>/_items/<version>/features.npy      float32 [M, item_dim]
    <store>/_items/<version>/predictions.npy  float32 [M, objectives]
    <store>/_items/ACTIVE                      the version served when Redis names none
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.manifest import sha256_of
from contracts.versions import VERSION_PATTERN, read_pointer, utc_version, write_pointer

ITEMS_DIR: Final = "_items"  # not a valid policy name, so it never collides with a policy folder
ITEMS_MANIFEST: Final = "items.json"
IDS_FILE: Final = "ids.json"
FEATURES_FILE: Final = "features.npy"
PREDICTIONS_FILE: Final = "predictions.npy"


class ItemTableError(Exception):
    """The item table on disk cannot be used."""


class ItemTableManifest(BaseModel):
    """items.json of one item table version."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = 1
    version: str = Field(pattern=VERSION_PATTERN)
    created_at: str
    count: int = Field(gt=0)
    item_columns: list[str]
    objectives: list[str]
    files: dict[str, str] = Field(description="file name → sha256 hex digest")


@dataclass(frozen=True)
class ItemTable:
    """A verified table in memory: row i of each matrix belongs to ids[i]."""

    manifest: ItemTableManifest
    ids: list[str]
    features: npt.NDArray[np.float32]
    predictions: npt.NDArray[np.float32]
    rows: dict[str, int]  # id → row, built once at load so a lookup is one dict probe per id

    @property
    def version(self) -> str:
        return self.manifest.version


def items_root(store: Path) -> Path:
    return store / ITEMS_DIR


def write_item_table(
    store: Path,
    ids: list[str],
    features: npt.NDArray[np.float32],
    predictions: npt.NDArray[np.float32],
    item_columns: list[str],
    objectives: list[str],
    version: str | None = None,
    activate: bool = True,
) -> ItemTableManifest:
    """Write a table into `<store>/_items/<version>/` atomically (staging folder + rename)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    predictions = np.ascontiguousarray(predictions, dtype=np.float32)
    _check_shapes(len(ids), features, predictions, len(item_columns), len(objectives))
    if len(set(ids)) != len(ids):
        raise ItemTableError("item ids must be unique")
    version = version or utc_version()
    root = items_root(store)
    root.mkdir(parents=True, exist_ok=True)
    target = root / version
    if target.exists():
        raise ItemTableError(f"item table {version} is already in {store}")
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{version}-"))
    try:
        (staging / IDS_FILE).write_text(json.dumps(ids))
        np.save(staging / FEATURES_FILE, features, allow_pickle=False)
        np.save(staging / PREDICTIONS_FILE, predictions, allow_pickle=False)
        manifest = ItemTableManifest(
            version=version,
            created_at=datetime.now(UTC).isoformat(),
            count=len(ids),
            item_columns=item_columns,
            objectives=objectives,
            files={name: sha256_of(staging / name) for name in (IDS_FILE, FEATURES_FILE, PREDICTIONS_FILE)},
        )
        (staging / ITEMS_MANIFEST).write_text(manifest.model_dump_json(indent=2))
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a service running as another user must read it
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if activate:
        set_active_items(store, version)
    return manifest


def set_active_items(store: Path, version: str) -> None:
    """Point `<store>/_items/ACTIVE` at an existing table, atomically."""
    root = items_root(store)
    if not (root / version / ITEMS_MANIFEST).is_file():
        raise ItemTableError(f"no item table {version} in {store}")
    write_pointer(root, version)


def active_items_version(store: Path) -> str | None:
    """The store's active item table, or None when the store ships none."""
    return read_pointer(items_root(store))


def load_item_table(store: Path, version: str) -> ItemTable:
    """Read and verify a table: manifest schema, every sha256, shapes, unique ids, finite values."""
    folder = items_root(store) / version
    try:
        manifest = ItemTableManifest.model_validate_json((folder / ITEMS_MANIFEST).read_text())
    except (OSError, ValidationError) as exc:
        raise ItemTableError(f"{folder}: invalid item table manifest: {exc}") from exc
    if manifest.version != version:
        raise ItemTableError(f"{folder} declares version {manifest.version}")
    for name in (IDS_FILE, FEATURES_FILE, PREDICTIONS_FILE):
        expected = manifest.files.get(name)
        try:
            actual = sha256_of(folder / name)
        except OSError as exc:
            raise ItemTableError(f"{folder / name}: {exc}") from exc
        if actual != expected:
            raise ItemTableError(f"{folder / name}: sha256 {actual} does not match the manifest's {expected}")
    try:
        ids = json.loads((folder / IDS_FILE).read_text())
        features = np.load(folder / FEATURES_FILE, allow_pickle=False)
        predictions = np.load(folder / PREDICTIONS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ItemTableError(f"{folder}: unreadable item table: {exc}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ItemTableError(f"{folder / IDS_FILE}: must be a JSON list of strings")
    if features.dtype != np.float32 or predictions.dtype != np.float32:
        raise ItemTableError(f"{folder}: matrices must be float32")
    _check_shapes(len(ids), features, predictions, len(manifest.item_columns), len(manifest.objectives))
    if len(ids) != manifest.count:
        raise ItemTableError(f"{folder}: {len(ids)} ids, the manifest says {manifest.count}")
    if not (np.isfinite(features).all() and np.isfinite(predictions).all()):
        raise ItemTableError(f"{folder}: matrices hold NaN or infinite values")
    rows = {item: row for row, item in enumerate(ids)}
    if len(rows) != len(ids):
        raise ItemTableError(f"{folder}: item ids are not unique")
    return ItemTable(manifest, ids, features, predictions, rows)


def _check_shapes(
    count: int,
    features: npt.NDArray[np.float32],
    predictions: npt.NDArray[np.float32],
    item_dim: int,
    objectives: int,
) -> None:
    if features.shape != (count, item_dim):
        raise ItemTableError(f"features are {features.shape}, expected ({count}, {item_dim})")
    if predictions.shape != (count, objectives):
        raise ItemTableError(f"predictions are {predictions.shape}, expected ({count}, {objectives})")
