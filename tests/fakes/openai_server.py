"""Fake OpenAI-compatible server on 127.0.0.1 (owner: teachers work). Exposes fixtures via ``__all__``."""

__all__: list[str] = []
