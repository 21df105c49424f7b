"""Tiny random models for tests: one implementation, :mod:`toolkit.testing.tiny_models`."""

from toolkit.testing.tiny_models import (
    CHAT_TEMPLATE,
    build_tiny_bert,
    build_tiny_llama,
    build_tiny_t5,
    build_tokenizer,
)

__all__ = ["CHAT_TEMPLATE", "build_tiny_bert", "build_tiny_llama", "build_tiny_t5", "build_tokenizer"]
