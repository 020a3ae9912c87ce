"""The benchmark harness (`cascade bench`): the compute limit, cascade-serve and a naive baseline, one run."""
