"""BENCHMARKS.md sections: the Locust run writes its own; `cascade bench` keeps it when it rewrites."""

from __future__ import annotations

from loadtest.benchmarks_section import block, carry_sections, replace_section


def test_a_section_is_appended_then_replaced_in_place() -> None:
    text = "# Benchmarks\n\nbench tables\n"

    once = replace_section(text, "locust", "first")
    twice = replace_section(once + "\ntrailer\n", "locust", "second")

    assert once == "# Benchmarks\n\nbench tables\n\n" + block("locust", "first")
    assert "first" not in twice
    assert twice.index("second") < twice.index("trailer")


def test_a_rewrite_of_the_file_keeps_the_sections_of_other_writers() -> None:
    old = replace_section("# Benchmarks\n\nold tables\n", "locust", "locust numbers")

    new = carry_sections(old, "# Benchmarks\n\nnew tables\n")

    assert "old tables" not in new
    assert "new tables" in new
    assert "locust numbers" in new
