"""Fixtures wrapping the fake servers; re-exported by ``tests/conftest.py``."""

from tests.fakes.hub_server import *  # noqa: F401,F403
from tests.fakes.openai_server import *  # noqa: F401,F403
