"""The fake OpenAI server (one implementation: :mod:`toolkit.testing.openai_server`) and its pytest fixture."""

from __future__ import annotations

import pytest

from toolkit.testing.openai_process import RemoteFakeServer, start_server_process
from toolkit.testing.openai_server import FAULT_KINDS, FakeOpenAIServer, RequestRecord, default_text

__all__ = [
    "FAULT_KINDS",
    "FakeOpenAIServer",
    "RemoteFakeServer",
    "RequestRecord",
    "default_text",
    "fake_openai",
    "start_server_process",
]


@pytest.fixture
def fake_openai():
    """A fresh fake OpenAI-compatible server (thread) per test: ``.base_url``, ``.requests``, ``.set_faults()``."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()
