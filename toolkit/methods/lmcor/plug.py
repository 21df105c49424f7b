"""Plug-and-play evaluation of a trained LMCor corrector on candidates it never saw in training.

The recipe (``recipes/lmcor.py``) tests a corrector on the candidates of its own run. The paper's claim is also
that a trained corrector plugs into *other* candidate sources: other WMT systems, or the training systems
themselves (a seen-systems control), or a teacher from another model family. :func:`evaluate_saved_corrector`
reloads a saved run (LoRA adapter or full model) and scores it, next to every training-free baseline, on any rows
that carry candidates, with the same input format, truncation and scoring as the recipe.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from peft import PeftModel

from toolkit.methods.lmcor.config import LMCorConfig
from toolkit.methods.lmcor.data import budgeted_format, corrector_inputs
from toolkit.methods.lmcor.evaluation import evaluate_run, generate_sharded
from toolkit.models.loading import load_tokenizer
from toolkit.models.students import load_student

__all__ = ["evaluate_saved_corrector", "load_saved_corrector", "with_test_systems"]


def load_saved_corrector(run_dir: str | Path, *, base_model: str) -> tuple[Any, Any, bool]:
    """``(model, tokenizer, is_seq2seq)`` of a finished run: its LoRA adapter on ``base_model``, or its weights."""
    run_dir = Path(run_dir)
    if (run_dir / "adapter_config.json").is_file():
        model, _, seq2seq = load_student(base_model, lora=False)
        model = PeftModel.from_pretrained(model, str(run_dir))
    else:
        model, _, seq2seq = load_student(str(run_dir), lora=False)
    tokenizer = load_tokenizer(str(run_dir), padding_side="right")
    model.eval()
    return model, tokenizer, seq2seq


def with_test_systems(config: LMCorConfig, test_systems: list[str]) -> LMCorConfig:
    """A copy of ``config`` that reads ``test_systems``' candidates at test time (every candidate if empty).

    The run's other systems become the "train" side, which only names systems to keep apart from the test side.
    """
    others = [name for name in config.train_systems + config.test_systems if name not in test_systems]
    return dataclasses.replace(config, test_systems=list(test_systems), train_systems=others if test_systems else [])


def evaluate_saved_corrector(
    run_dir: str | Path,
    config: LMCorConfig,
    rows: list[dict[str, Any]],
    *,
    base_model: str,
    max_source_len: int,
    chat_template: bool = True,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    batch_size: int = 16,
    test_systems: list[str] | None = None,
    dev_rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Decode ``rows`` with the saved corrector and score it with every baseline (``evaluate_run``'s dict).

    Args:
        run_dir: the run's ``output_dir``.
        config: the run's method settings (format, k, scoring).
        rows: test rows with ``candidates`` (and ``systems`` when ``test_systems`` is given).
        base_model: the student the run trained (an adapter is loaded on top of it).
        max_source_len: the run's input cap in student tokens.
        chat_template: causal students: wrap the input in the chat template, as the run did.
        max_new_tokens: corrector output length cap.
        num_beams: 1 = greedy, > 1 = beam search.
        batch_size: generation batch size.
        test_systems: read only these systems' candidates (e.g. the training systems as a seen-systems control);
            ``None`` = the run's own ``test_systems``. An empty list reads every candidate of the rows.
        dev_rows: rows to choose the best single system on (held-out-system runs).

    Returns:
        ``evaluate_run``'s results plus ``timings`` (``generate_s``) and ``test_rows``.
    """
    if test_systems is not None:
        config = with_test_systems(config, test_systems)
    model, tokenizer, seq2seq = load_saved_corrector(run_dir, base_model=base_model)
    fmt = budgeted_format(config, tokenizer, max_source_len, is_seq2seq=seq2seq)
    inputs = corrector_inputs(rows, config, fmt)
    started = time.perf_counter()
    predictions = generate_sharded(
        model,
        tokenizer,
        inputs,
        is_seq2seq=seq2seq,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        batch_size=batch_size,
        max_source_len=max_source_len,
        chat_template=chat_template and not seq2seq,
    )
    results = evaluate_run(config, rows, inputs, predictions, dev_rows=dev_rows or [])
    results["timings"] = {"generate_s": time.perf_counter() - started}
    results["test_rows"] = len(rows)
    return results
