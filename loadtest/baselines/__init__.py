"""Baselines the benchmark harness measures cascade-serve against."""
