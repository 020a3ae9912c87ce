"""Sections of BENCHMARKS.md owned by one writer, kept when another writer rewrites the file.

`cascade bench` writes BENCHMARKS.md whole; `python -m loadtest.run --benchmarks BENCHMARKS.md`
writes only its own section between two markers. The bench report carries such sections over.
"""

from __future__ import annotations

import re

_BLOCK = re.compile(r"<!-- section: (?P<name>[a-z-]+) -->\n.*?<!-- end section: (?P=name) -->\n", re.DOTALL)


def block(name: str, body: str) -> str:
    """The marked section `name` holding `body`."""
    return f"<!-- section: {name} -->\n{body.rstrip()}\n<!-- end section: {name} -->\n"


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name` replaced by `body`, or appended when it has none."""
    new = block(name, body)
    for match in _BLOCK.finditer(text):
        if match.group("name") == name:
            return text[: match.start()] + new + text[match.end() :]
    return text.rstrip("\n") + "\n\n" + new


def carry_sections(old: str, new: str) -> str:
    """`new` with every marked section of `old` that `new` lacks appended (a rewrite keeps them)."""
    present = {match.group("name") for match in _BLOCK.finditer(new)}
    kept = [match.group(0) for match in _BLOCK.finditer(old) if match.group("name") not in present]
    return new if not kept else new.rstrip("\n") + "\n\n" + "\n".join(kept)
