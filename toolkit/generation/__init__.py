"""Teacher generation: everything between input rows and generated rows.

- :mod:`~toolkit.generation.prompts`: few-shot templates, demonstration selection, template hashes;
- :mod:`~toolkit.generation.cache` (+ :mod:`~toolkit.generation.cache_writer`, :mod:`~toolkit.generation.cache_journal`):
  the content-addressed SQLite cache, its group commits and its answer journal;
- :mod:`~toolkit.generation.engine` (+ :mod:`~toolkit.generation.items`): work items -> teacher, through the cache;
- :mod:`~toolkit.generation.jobs` (+ :mod:`~toolkit.generation.outputs`): the jobs' configs, inputs, generic run
  and output folder;
- :mod:`~toolkit.generation.candidates`, :mod:`~toolkit.generation.rationales`: the two jobs (run by
  ``data_gen/*.py``; the LMCor recipe calls the candidates job for its candidates).
"""
