"""Sections of RESULTS.md owned by other experiments, each between its own markers, so that every
experiment rewrites only its part of the file and keeps the others'."""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- ([a-z]+(?::[a-z_]+)?):start -->.*?<!-- \1:end -->\n?", re.DOTALL)


def update_section(path: Path, key: str, markdown: str) -> Path:
    """Put `markdown` between the markers of section `key` in `path`, replacing an older copy or appending."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
    return path


def keep_sections(path: Path, previous: str) -> None:
    """Append to the freshly written `path` every marked section `previous` had and it lacks."""
    text = path.read_text()
    kept = [m.group(0) for m in _SECTION.finditer(previous) if m.group(0) not in text]
    if kept:
        path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(kept))
