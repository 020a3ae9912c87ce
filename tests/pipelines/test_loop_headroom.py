"""The loop headroom section says what its numbers say."""

from __future__ import annotations

from pipelines.loop_headroom import render


def test_the_section_is_made_from_the_values_it_is_given() -> None:
    values = {
        seed: {
            "demo": {"mean": 3.0, "gaussian": 2.9},
            "fusion trained on the truth": {"mean": 3.0 + gain, "gaussian": 2.9 + gain},
            "CEM constant action": {"mean": 3.0 - gain},
        }
        for seed, gain in ((0, 0.03), (1, 0.06), (2, 0.09))
    }
    section = render("v2", (0, 1, 2), values, "python -m pipelines.loop_headroom --seeds 0-2 --world v2")

    assert "| 1 | 3.000 | 3.060 (+2.00%) | 2.940 (-2.00%) | 2.900 | 2.960 (+2.07%) |" in section
    truth = "trained on the truth − demo (served mean): +0.060 (+2.00%; 95 % CI [-0.015, +0.135], 3/3 seeds higher)"
    constant = "best constant − demo (served mean): -0.060 (-2.00%; 95 % CI [-0.135, +0.015], 0/3 seeds higher)"
    assert truth in section and constant in section
    assert section.startswith("## How much the loop could lift: the demo against what its world allows (simulator v2)")
