"""Experiments: plans (``experiments/plans/*.yaml``), the one runner (``python -m experiments <plan>``), the
seed-level statistics and the results tables. The protocol they enforce is ``results/PROTOCOL.md``."""
