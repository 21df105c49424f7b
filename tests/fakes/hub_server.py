"""Fake Hugging Face Hub on 127.0.0.1 (owner: hub work). Exposes fixtures via ``__all__``."""

__all__: list[str] = []
