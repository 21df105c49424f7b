"""Data-generation jobs (runnable scripts); shared plumbing in :mod:`data_gen.common`."""
