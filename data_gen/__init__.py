"""Data-generation jobs (runnable scripts); shared plumbing in :mod:`toolkit.generation.jobs`."""
