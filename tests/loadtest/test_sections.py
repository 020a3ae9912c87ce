"""BENCHMARKS.md sections: a harness rewrites its own part and keeps every other section as it was."""

from __future__ import annotations

from pathlib import Path

from loadtest.bench.sections import write_section


def test_a_section_replaces_only_its_own_text(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Locust\nusers: 50\n")

    write_section(path, "server-comparison", "## Servers\nfirst run")
    write_section(path, "other", "## Logging cost\n3 %")
    write_section(path, "server-comparison", "## Servers\nsecond run")

    text = path.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "second run" in text and "first run" not in text
    assert text.count("<!-- server-comparison:start -->") == 1
    assert "## Locust\nusers: 50" in text and "## Logging cost\n3 %" in text


def test_a_missing_file_gets_a_title_and_the_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"

    write_section(path, "cascade-bench", "numbers")

    assert path.read_text() == "# Benchmarks\n\n<!-- cascade-bench:start -->\nnumbers\n<!-- cascade-bench:end -->\n"
