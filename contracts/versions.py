"""Names of policies and versions, and the `ACTIVE` pointer file that names a folder's active version.

A pointer is replaced atomically (write a temporary file, rename it over the old one), so a reader
sees the old name or the new one, never half of one. The model store (`<store>/<policy>/ACTIVE`) and
the item tables (`<store>/_items/ACTIVE`) both use it.
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

ACTIVE_POINTER: Final = "ACTIVE"
# A policy name also tells policy folders from the store's own folders (`_items` is not one).
POLICY_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Bundle and item-table versions: a folder name, so no separators and no leading dot.
VERSION_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION_PATTERN: Final = f"^{VERSION_NAME.pattern}$"
POLICY_PATTERN: Final = f"^{POLICY_NAME.pattern}$"


def write_pointer(folder: Path, version: str) -> None:
    """Make `<folder>/ACTIVE` name `version`, atomically."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".active-")
    with os.fdopen(fd, "w") as handle:
        handle.write(version + "\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a service running as another user must read it
    os.replace(tmp, folder / ACTIVE_POINTER)


def read_pointer(folder: Path) -> str | None:
    """The version `<folder>/ACTIVE` names; None when there is no pointer or it is empty."""
    try:
        return (folder / ACTIVE_POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


def utc_version() -> str:
    """A default version name: the UTC time to the microsecond (e.g. 20250101T120000.123456Z), sortable."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
