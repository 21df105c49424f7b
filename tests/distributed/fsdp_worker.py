"""One rank of the CPU FSDP2 check (launched by tests/distributed/test_fsdp_cpu.py through torch.distributed.run).

A tiny Llama sharded with ``torch.distributed.fsdp.fully_shard`` over gloo: a few training steps, greedy generation
sharded across the ranks with ``toolkit.distributed.map_sharded``, then a full state dict gathered to rank 0 and saved
with ``save_pretrained``. Writes ``rank<i>.json`` (what this rank saw) into the output folder.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed/fsdp_worker.py MODEL OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor
from transformers import AutoTokenizer, LlamaForCausalLM

from toolkit.distributed import map_sharded

PROMPTS = [
    "she go to school yesterday .",
    "the movie was great",
    "Jack had 8 apples and gave 3 away .",
    "play the song by the beatles",
    "book a table for two",
]
TRAIN = ["the dog runs home quickly .", "this movie was great , i loved it .", "0 1 2 3 4 5", "a man plays a guitar ."]
MAX_NEW_TOKENS = 6


def shard(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """FSDP2 the usual way: every decoder layer its own unit, then the root (embeddings, norm, tied head)."""
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def train_steps(model, tokenizer, rank: int, world: int, steps: int = 2) -> list[float]:
    """Plain data-parallel steps: each rank its slice of the global batch; FSDP averages the gradients."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = tokenizer(TRAIN[rank::world], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    losses = []
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def generate_sharded(model, tokenizer) -> list[list[int]]:
    """Greedy continuations of every prompt, each rank generating its share.

    One prompt per ``generate`` (no padding to tell the runs apart) and ``synced_gpus=True``: a rank whose
    sequence ends early keeps joining the others' forward passes, whose parameter all-gathers need every rank
    (transformers turns it on by itself for an FSDP-managed module; spelled out here because it is the point).
    """

    def continue_share(prompts: list[str]) -> list[list[int]]:
        outputs = []
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, synced_gpus=True)
            outputs.append(out[0, ids["input_ids"].shape[1] :].tolist())
        return outputs

    return map_sharded(continue_share, PROMPTS)


def main(model_dir: str, out_dir: str) -> None:
    state = PartialState(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = shard(LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    weight = model.model.layers[0].mlp.up_proj.weight
    record = {
        "rank": state.process_index,
        "distributed_type": state.distributed_type.value,
        "world_size": state.num_processes,
        "fsdp_module": isinstance(model, FSDPModule) and isinstance(model.model.layers[0], FSDPModule),
        "sharded_param": isinstance(weight, DTensor),
        "local_rows": weight.to_local().shape[0] if isinstance(weight, DTensor) else None,
        "full_rows": weight.shape[0],
    }
    record["losses"] = train_steps(model, tokenizer, state.process_index, state.num_processes)
    record["generations"] = generate_sharded(model, tokenizer)
    # Every rank takes part in the gather; rank 0 alone writes.
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if state.is_main_process:
        record["gathered_keys"] = len(full)
        model.save_pretrained(Path(out_dir) / "saved", state_dict=full)
        tokenizer.save_pretrained(Path(out_dir) / "saved")
    state.wait_for_everyone()
    (Path(out_dir) / f"rank{state.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
