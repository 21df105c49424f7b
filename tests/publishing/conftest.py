"""Fixtures of the round-trip tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny Llama with its (tied) embeddings scaled up: clear margins between the top logits, so that greedy
    decoding does not flip on a near-tie when two processes sum in a different order."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(30.0)
    target = tmp_path_factory.mktemp("decisive-base")
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(target)
    return target
