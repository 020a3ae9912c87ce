"""requirements.lock and requirements-peers.lock agree with pyproject.toml; this environment was installed from them.

The lock is what every install uses as constraints (Makefile, CI, the serving image), so a fresh
machine gets exactly what CI tested. It goes stale when pyproject.toml gains, drops or narrows a
requirement without `make lock`; these tests catch each of those. The `peers` extra (the servers the
benchmark compares with) is locked apart, compiled with requirements.lock as constraints, so that
`make run` and `make test` never need it and every package both locks pin has one version.
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
PEERS_LOCK_TEXT = (ROOT / "requirements-peers.lock").read_text()
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)
PEERS = "peers"  # the one extra locked in requirements-peers.lock (`make lock-peers`)


def pins(text: str) -> dict[str, str]:
    """name → pinned version of every `name==version` line of a lock."""
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


LOCKED = pins(LOCK_TEXT)
PEERS_LOCKED = pins(PEERS_LOCK_TEXT)
# Which lock holds which extras: (file, its text, the make target that writes it).
LOCKS = {"requirements.lock": (LOCK_TEXT, "make lock"), "requirements-peers.lock": (PEERS_LOCK_TEXT, "make lock-peers")}


def direct_requirements(extras: list[str] | None = None) -> list[Requirement]:
    """The requirements pyproject.toml declares: the base dependencies and these extras' (default: every extra)."""
    declared = PROJECT.get("optional-dependencies", {})
    chosen = list(declared) if extras is None else extras
    return [Requirement(text) for text in [*PROJECT["dependencies"], *(r for e in chosen for r in declared[e])]]


def main_extras() -> list[str]:
    return [extra for extra in PROJECT.get("optional-dependencies", {}) if extra != PEERS]


def lock_command(text: str) -> str:
    return next(line for line in text.splitlines() if "pip-compile" in line and "--output-file" in line)


def locked_as_direct(text: str = LOCK_TEXT) -> set[str]:
    """Names a lock says it pinned because pyproject.toml asked for them (pip-compile's `via` notes)."""
    names: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        if match := PIN.match(line):
            current = canonicalize_name(match.group(1))
        elif current and "cascade-serve (pyproject.toml)" in line:
            names.add(current)
    return names


def test_every_extra_is_locked() -> None:
    command = lock_command(LOCK_TEXT)

    for extra in main_extras():
        assert f"--extra={extra}" in command, f"extra '{extra}' is not in the lock: run `make lock`"


@pytest.mark.parametrize("extra", list(PROJECT.get("optional-dependencies", {})))
def test_each_extra_is_locked_in_exactly_one_lock(extra: str) -> None:
    holding = [name for name, (text, _) in LOCKS.items() if f"--extra={extra}" in lock_command(text)]

    assert holding == ["requirements-peers.lock" if extra == PEERS else "requirements.lock"], (
        f"extra '{extra}' is locked in {holding}: run `make lock` and `make lock-peers`"
    )


def test_the_peers_lock_is_compiled_against_the_main_lock() -> None:
    # -c requirements.lock: a package both locks pin gets the main lock's version, so installing the
    # peers never moves what `make test` runs with.
    assert "--constraint=requirements.lock" in lock_command(PEERS_LOCK_TEXT)
    shared = LOCKED.keys() & PEERS_LOCKED.keys()

    assert {n: (LOCKED[n], PEERS_LOCKED[n]) for n in shared if LOCKED[n] != PEERS_LOCKED[n]} == {}


@pytest.mark.parametrize("requirement", direct_requirements(main_extras()), ids=str)
def test_every_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)

    assert name in LOCKED, f"{requirement} is not in requirements.lock: run `make lock`"
    assert requirement.specifier.contains(Version(LOCKED[name]), prereleases=True), (
        f"requirements.lock pins {name}=={LOCKED[name]}, outside {requirement}: run `make lock`"
    )


@pytest.mark.parametrize("requirement", direct_requirements([PEERS]), ids=str)
def test_every_peers_requirement_is_pinned_within_its_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)

    assert name in PEERS_LOCKED, f"{requirement} is not in requirements-peers.lock: run `make lock-peers`"
    assert requirement.specifier.contains(Version(PEERS_LOCKED[name]), prereleases=True), (
        f"requirements-peers.lock pins {name}=={PEERS_LOCKED[name]}, outside {requirement}: run `make lock-peers`"
    )


def test_the_lock_pins_nothing_pyproject_no_longer_asks_for() -> None:
    declared = {canonicalize_name(r.name) for r in direct_requirements(main_extras())}

    assert locked_as_direct() == declared


def test_the_peers_lock_pins_nothing_pyproject_no_longer_asks_for() -> None:
    declared = {canonicalize_name(r.name) for r in direct_requirements([PEERS])}

    assert locked_as_direct(PEERS_LOCK_TEXT) == declared


def test_torch_is_the_cpu_build_on_disk() -> None:
    # Any other torch spec makes pip download CUDA wheels of several GB.
    assert "torch==2.13.0" in PROJECT["optional-dependencies"]["train"]
    assert Version(LOCKED["torch"]).public == "2.13.0"


def test_this_environment_was_installed_from_the_lock() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}

    differs = {name: (pin, installed[name]) for name, pin in LOCKED.items() if installed.get(name) != pin}

    assert not differs, f"installed versions differ from requirements.lock (pin, installed): {differs}"


def test_installed_peers_are_the_peers_lock_versions() -> None:
    # The peers are optional: absent is fine, but once `make peers` ran they must be what the lock says.
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}

    differs = {n: (pin, installed[n]) for n, pin in PEERS_LOCKED.items() if installed.get(n, pin) != pin}

    assert not differs, f"installed versions differ from requirements-peers.lock (pin, installed): {differs}"
