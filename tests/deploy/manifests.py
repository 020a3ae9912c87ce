"""Reading deploy/: the YAML documents of a kustomization and the settings names they may set."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# Every folder `kubectl apply -k` is pointed at.
KUSTOMIZATIONS = [
    KUBERNETES / "base",
    KUBERNETES / "overlays" / "dev",
    KUBERNETES / "overlays" / "production",
    DEPLOY / "kserve",
]


def documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of one file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource_files(kustomization: Path) -> Iterator[Path]:
    """Files a kustomization lists as resources, through the folders it includes (patches excluded)."""
    spec = documents(kustomization / "kustomization.yaml")[0]
    for entry in spec.get("resources", []):
        target = (kustomization / entry).resolve()
        if target.is_dir():
            yield from resource_files(target)
        else:
            yield target


def render(kubectl: str, kustomization: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of one folder, as documents."""
    result = subprocess.run(
        [kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of this kind (and name)."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]
