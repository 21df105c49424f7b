"""Load what a recipe run saved, the way a user would, and fail loudly if it is not a complete model.

    python scripts/check_reload.py RUN_DIR [RUN_DIR ...]

* ``head_config.json`` (LLMEmbed): the fusion head, through ``toolkit.methods.llmembed.head.load_head``.
* ``adapter_config.json`` (LoRA / QLoRA): the adapter on its base model, through ``peft``.
* ``config.json``: ``from_pretrained`` with ``output_loading_info``: a missing or unexpected weight is an error
  (a sharded FSDP save, or a ZeRO-3 save without gathered 16-bit weights, leaves exactly that), then 4 greedy tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from toolkit.methods.llmembed.head import load_head


def check_head(run_dir: Path) -> str:
    head = load_head(run_dir)
    views = [torch.zeros(1, dim) for dim in head.config.view_dims]
    return f"fusion head, {head(views).shape[-1]} labels"


def check_adapter(run_dir: Path) -> str:
    from peft import AutoPeftModelForCausalLM  # optional dependency: only adapter runs need it

    model = AutoPeftModelForCausalLM.from_pretrained(run_dir)
    return f"adapter on {model.peft_config['default'].base_model_name_or_path}"


def check_model(run_dir: Path) -> str:
    config = AutoConfig.from_pretrained(run_dir)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model, info = auto.from_pretrained(run_dir, output_loading_info=True)
    broken = {kind: keys for kind, keys in info.items() if kind in ("missing_keys", "unexpected_keys") and keys}
    if broken:
        raise SystemExit(f"{run_dir}: incomplete model {broken}")
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    ids = tokenizer("hello", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return f"{type(model).__name__}, generated {out.shape[-1] - ids['input_ids'].shape[-1]} tokens"


def check(run_dir: Path) -> str:
    if (run_dir / "head_config.json").is_file():
        return check_head(run_dir)
    if (run_dir / "adapter_config.json").is_file():
        return check_adapter(run_dir)
    if (run_dir / "config.json").is_file():
        return check_model(run_dir)
    raise SystemExit(f"{run_dir}: no saved model (no head_config.json, adapter_config.json or config.json)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    for run_dir in parser.parse_args(argv).run_dirs:
        sys.stdout.write(f"reloaded {run_dir}: {check(run_dir)}\n")


if __name__ == "__main__":
    main()
