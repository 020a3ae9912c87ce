"""The torch weights inside a bundle (`policy.pt`), so the next training run can warm-start from the
version that serves (the closed loop). The exporter writes it before hashing, so the manifest's `files` holds
its sha256 and the service's verification covers it like any graph; loading checks that hash first."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from contracts.manifest import Manifest, sha256_of
from models.nets.cascade import CascadePolicy, PolicyConfig

CHECKPOINT_FILE = "policy.pt"


class CheckpointError(RuntimeError):
    """The bundle has no usable checkpoint: missing, unhashed or not the file the manifest vouches for."""


def save_checkpoint(policy: CascadePolicy, path: Path) -> None:
    """The policy's config and weights, loadable with `torch.load(weights_only=True)`."""
    torch.save({"config": asdict(policy.config), "state_dict": policy.state_dict()}, path)


def load_checkpoint(bundle_dir: Path, manifest: Manifest) -> CascadePolicy:
    """Rebuild the bundle's torch policy; refuse a checkpoint whose sha256 is not the manifest's."""
    path = bundle_dir / CHECKPOINT_FILE
    expected = manifest.files.get(CHECKPOINT_FILE)
    if expected is None or not path.is_file():
        raise CheckpointError(f"{bundle_dir} carries no {CHECKPOINT_FILE} listed in its manifest")
    if sha256_of(path) != expected:
        raise CheckpointError(f"{path}: sha256 differs from the manifest's")
    return read_checkpoint(path)


def read_checkpoint(path: Path) -> CascadePolicy:
    """Rebuild a torch policy from a `save_checkpoint` file (no manifest to check it against)."""
    saved: dict[str, Any] = torch.load(path, weights_only=True)
    known = {f.name for f in fields(PolicyConfig)}
    arguments: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
    config = PolicyConfig(**{k: v for k, v in arguments.items() if k in known})
    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: leave the caller's RNG untouched
        policy = CascadePolicy(config)
    policy.load_state_dict(saved["state_dict"])
    policy.eval()
    return policy
