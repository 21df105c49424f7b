"""Shared fixtures. Fakes live in ``tests/fakes/``; fixtures here are session-scoped where safe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach the Hub and never oversubscribe the 2-core CI box.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]

# Fixture modules owned by the fakes (fake OpenAI server, fake Hub); imported for their fixtures.
from tests.fakes.fixtures import *  # noqa: E402,F401,F403


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests when no CUDA device is present."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch always installed here
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data root (``TOOLKIT_DATA_DIR`` or ``../shared/data``); skips when absent."""
    from toolkit.tasks.base import data_root as _data_root

    try:
        root = _data_root()
    except FileNotFoundError:
        root = None
    if root is None or not Path(root).is_dir():
        pytest.skip("real data root not found (set TOOLKIT_DATA_DIR or place ../shared/data)")
    return Path(root)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from toolkit.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_cls_dir(tmp_path_factory) -> Path:
    from toolkit.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-cls"), for_classification=3)


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    from toolkit.testing.tiny_models import build_tiny_t5

    return build_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from toolkit.testing.tiny_models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
