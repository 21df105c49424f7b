"""Test doubles for the toolkit's tests, benchmarks and users' CI (imported explicitly; nothing is loaded here).

- :mod:`toolkit.testing.openai_server`: a fake OpenAI-compatible server (chat / completions, Files, Batches),
  deterministic texts, injectable faults; :mod:`toolkit.testing.openai_process` runs it in a child process.
- :mod:`toolkit.testing.tiny_models`: tiny random Llama / T5 / BERT models saved to disk (no Hub access).
"""
