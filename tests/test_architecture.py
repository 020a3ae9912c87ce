"""The design's import rules (DESIGN.md, "The loop"), read from every module's imports.

Every import statement counts, function-level ones included: a lazy import still couples two parts.
contracts/ imports nothing of ours; service/, archive/ and models/ import only contracts/; export/ imports
models/ and contracts/; pipelines/ may import all. Third-party limits keep the serving image and
the contracts light: contracts/ stays numpy + msgspec + pydantic, service/ never loads torch.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OURS = {"contracts", "models", "export", "service", "archive", "pipelines", "loadtest", "cascade_cli", "tests"}
# Parts of ours each part may import (itself always).
ALLOWED_OURS: dict[str, set[str]] = {
    "contracts": set(),
    "service": {"contracts"},
    "archive": {"contracts"},
    "models": {"contracts"},
    "export": {"models", "contracts"},
    "pipelines": {"contracts", "models", "export", "service", "archive"},
}
# Third-party packages a part must never import.
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "contracts": {"torch", "onnx", "onnxruntime", "fastapi", "starlette", "redis", "uvicorn"},
    "service": {"torch", "onnx"},
    "archive": {"torch", "onnx"},
}


# The extras a part is installed with (besides the base dependencies): its third-party imports must come
# from them, so `pip install .[train]` alone runs a trainer and the `serve` extra alone serves.
EXTRAS: dict[str, tuple[str, ...]] = {
    "contracts": (),
    "models": ("train",),
    "export": ("train",),
    "service": ("serve",),
    "archive": ("serve",),  # the serving parent runs it beside the embedded Redis
    "pipelines": ("serve", "train", "dev"),  # workflows for a development machine: HTTP clients, everything
}


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module's source, at any depth."""
    found: list[tuple[int, str]] = []
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def part_imports(root: Path, part: str) -> Iterator[tuple[str, str]]:
    """('file:line', absolute module name) of every import in `<root>/<part>/`."""
    for path in sorted((root / part).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        for line, name in imported_modules(path.read_text(), module):
            yield f"{path.relative_to(root)}:{line}", name


def violations(root: Path, part: str) -> list[str]:
    """Every import in `<root>/<part>/` that the rules above forbid, as 'file:line imports name'."""
    allowed = ALLOWED_OURS[part] | {part}
    banned = FORBIDDEN_THIRD_PARTY.get(part, set())
    found: list[str] = []
    for where, name in part_imports(root, part):
        top = name.split(".")[0]
        if (top in OURS and top not in allowed) or top in banned:
            found.append(f"{where} imports {name}")
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED_OURS))
def test_each_part_imports_only_what_the_design_allows(part: str) -> None:
    assert (ROOT / part).is_dir()

    assert violations(ROOT, part) == []


def test_a_forbidden_import_is_caught_even_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "ranker.py").write_text(
        "from contracts.manifest import Manifest\n\ndef rank() -> None:\n    from models.nets import cascade\n"
    )
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "manifest.py").write_text("import numpy\nfrom . import versions\nimport torch\n")

    assert violations(tmp_path, "service") == ["service/ranker.py:4 imports models.nets"]
    assert violations(tmp_path, "contracts") == ["contracts/manifest.py:3 imports torch"]


def test_every_package_is_under_strict_mypy() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]

    assert mypy["strict"] is True
    assert set(ALLOWED_OURS) <= set(mypy["files"])
    assert not [o for o in mypy.get("overrides", []) if o.get("ignore_errors")]


def test_the_serving_image_carries_only_contracts_and_service() -> None:
    copied = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]

    assert {"contracts", "service"} <= set(copied)
    assert not {"models", "export", "pipelines", "loadtest"} & set(copied)


def declared_distributions(extras: tuple[str, ...]) -> set[str]:
    """Distributions pyproject.toml installs with these extras (direct requirements only)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    return {canonicalize_name(Requirement(text).name) for text in texts}


@pytest.mark.parametrize("part", sorted(EXTRAS))
def test_each_part_imports_only_what_its_extras_install(part: str) -> None:
    provided = declared_distributions(EXTRAS[part])
    distributions = importlib.metadata.packages_distributions()
    missing: list[str] = []
    for where, name in part_imports(ROOT, part):
        top = name.split(".")[0]
        if top in OURS or top in sys.stdlib_module_names or top == "__future__":
            continue
        if not {canonicalize_name(d) for d in distributions.get(top, [top])} & provided:
            missing.append(f"{where} imports {name}")

    assert missing == [], f"not installed by the base dependencies + {EXTRAS[part]}"


def test_the_peers_import_nothing_of_cascade_serve() -> None:
    # A peer (loadtest/peers) is what a user would write instead of cascade-serve: it reads the bundle with
    # json, numpy and onnxruntime, so the comparison measures an independent implementation.
    found = [
        f"{where} imports {name}"
        for where, name in part_imports(ROOT, "loadtest/peers")
        if name.split(".")[0] in OURS and not name.startswith("loadtest.peers")
    ]

    assert found == []
