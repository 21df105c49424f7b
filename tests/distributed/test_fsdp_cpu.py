"""FSDP's own paths on CPU: torch's FSDP2 (``fully_shard``) over gloo, 2 processes, on a tiny Llama.

``accelerate launch`` with an FSDP config silently runs DDP on a machine without a GPU, so these paths are tested on
FSDP2 directly: training steps on sharded parameters, generation sharded across the ranks (every rank in every
forward pass), a full state dict gathered to rank 0 and saved with ``save_pretrained``, and a reload with
``from_pretrained`` that generates exactly what the sharded model did.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, LlamaForCausalLM

from tests.distributed import fsdp_worker

WORKER = Path(fsdp_worker.__file__)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fsdp_run(tiny_llama_dir, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = [*launcher, str(WORKER), str(tiny_llama_dir), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = sorted((json.loads(path.read_text()) for path in out.glob("rank*.json")), key=lambda r: r["rank"])
    assert [record["rank"] for record in records] == [0, 1]
    return out, records


def test_the_model_really_is_sharded_by_fsdp(fsdp_run):
    _, records = fsdp_run
    for record in records:
        assert record["distributed_type"] == "MULTI_CPU" and record["world_size"] == 2
        assert record["fsdp_module"] and record["sharded_param"]
        assert record["local_rows"] * 2 == record["full_rows"]  # each rank holds half of a parameter


def test_training_steps_run_and_the_saved_weights_are_the_trained_ones(fsdp_run, tiny_llama_dir):
    out, records = fsdp_run
    assert all(math.isfinite(loss) for record in records for loss in record["losses"])
    saved = load_file(str(out / "saved" / "model.safetensors"))
    initial = load_file(str(Path(tiny_llama_dir) / "model.safetensors"))
    assert set(initial) <= set(saved)  # the gathered dict also spells out the tied lm_head
    assert any(not torch.equal(saved[name], initial[name]) for name in initial)


def test_sharded_generation_is_gathered_in_order_on_every_rank(fsdp_run):
    _, records = fsdp_run
    generations = [record["generations"] for record in records]
    assert generations[0] == generations[1] and len(generations[0]) == len(fsdp_worker.PROMPTS)


def test_the_gathered_save_reloads_and_generates_what_the_sharded_model_did(fsdp_run):
    """One process, the plain model from ``from_pretrained``: the same greedy tokens as the 2 FSDP ranks."""
    out, records = fsdp_run
    model = LlamaForCausalLM.from_pretrained(out / "saved", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "saved")
    reloaded = []
    for prompt in fsdp_worker.PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            generated = model.generate(**ids, max_new_tokens=fsdp_worker.MAX_NEW_TOKENS, do_sample=False)
        reloaded.append(generated[0, ids["input_ids"].shape[1] :].tolist())
    assert reloaded == records[0]["generations"]
