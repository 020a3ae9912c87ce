"""BENCHMARKS.md is written by more than one harness: each owns a section between its own markers.

Writing a section replaces only the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`; a file
without them gets the section after its title, and everything else in the file is kept as it was.
"""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, body: str) -> None:
    """Put `body` between the section's markers in `path` (created with a title if missing)."""
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        title, newline, rest = text.partition("\n")
        if title.startswith("# "):
            text = f"{title}\n\n{block}\n{newline}{rest.lstrip(chr(10))}" if rest else f"{title}\n\n{block}\n"
        else:
            text = f"{block}\n\n{text}"
    path.write_text(text if text.endswith("\n") else text + "\n")
