"""requirements.lock agrees with pyproject.toml, and this environment was installed from it.

The lock is what every install uses as constraints (Makefile, CI, the serving image), so a fresh
machine gets exactly what CI tested. It goes stale when pyproject.toml gains, drops or narrows a
requirement without `make lock`; these tests catch each of those.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK_TEXT = (ROOT / "requirements.lock").read_text()
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)
LOCKED: dict[str, str] = {canonicalize_name(name): version for name, version in PIN.findall(LOCK_TEXT)}


def direct_requirements() -> list[Requirement]:
    """Every requirement pyproject.toml declares: the base dependencies and each extra's."""
    extras = PROJECT.get("optional-dependencies", {})
    return [Requirement(text) for text in [*PROJECT["dependencies"], *(r for deps in extras.values() for r in deps)]]


def locked_as_direct() -> set[str]:
    """Names the lock says it pinned because pyproject.toml asked for them (pip-compile's `via` notes)."""
    names: set[str] = set()
    current: str | None = None
    for line in LOCK_TEXT.splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
        elif current and "cascade-serve (pyproject.toml)" in line:
            names.add(current)
    return names


def test_every_extra_is_locked() -> None:
    command = next(line for line in LOCK_TEXT.splitlines() if "pip-compile" in line and "--output-file" in line)

    for extra in PROJECT.get("optional-dependencies", {}):
        assert f"--extra={extra}" in command, f"extra '{extra}' is not in the lock: run `make lock`"


@pytest.mark.parametrize("requirement", direct_requirements(), ids=str)
def test_every_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)

    assert name in LOCKED, f"{requirement} is not in requirements.lock: run `make lock`"
    assert requirement.specifier.contains(Version(LOCKED[name]), prereleases=True), (
        f"requirements.lock pins {name}=={LOCKED[name]}, outside {requirement}: run `make lock`"
    )


def test_the_lock_pins_nothing_pyproject_no_longer_asks_for() -> None:
    declared = {canonicalize_name(r.name) for r in direct_requirements()}

    assert locked_as_direct() == declared


def test_torch_is_the_cpu_build_on_disk() -> None:
    # Any other torch spec makes pip download CUDA wheels of several GB.
    assert "torch==2.13.0" in PROJECT["optional-dependencies"]["train"]
    assert Version(LOCKED["torch"]).public == "2.13.0"


def test_this_environment_was_installed_from_the_lock() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}

    differs = {name: (pin, installed[name]) for name, pin in LOCKED.items() if installed.get(name) != pin}

    assert not differs, f"installed versions differ from requirements.lock (pin, installed): {differs}"
