"""Plug-and-play evaluation of a trained LMCor corrector on candidates it never saw in training.

The recipe (``recipes/lmcor.py``) tests a corrector on the candidates of its own run. The paper's claim is also
that a trained corrector plugs into *other* candidate sources: other WMT systems, or the training systems
themselves (a seen-systems control), or a teacher from another model family. :func:`evaluate_saved_corrector`
reloads a saved run (LoRA adapter or full model) and scores it, next to every training-free baseline, on any rows
that carry candidates, with the same input format, truncation and scoring as the recipe.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_saved_corrector(run_dir: str | Path, model_args):
    """``(model, tokenizer, is_seq2seq)`` of a finished run: its LoRA adapter on the base model, or its weights."""
    from toolkit.models import students

    run_dir = Path(run_dir)
    if (run_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        model, _, seq2seq = students.load_student(model_args.model_name_or_path, lora=False)
        model = PeftModel.from_pretrained(model, str(run_dir))
    else:
        model, _, seq2seq = students.load_student(str(run_dir), lora=False)
    from toolkit.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(run_dir), padding_side="right")
    model.eval()
    return model, tokenizer, seq2seq


def evaluate_saved_corrector(
    run_dir: str | Path,
    script_args,
    model_args,
    rows: list[dict[str, Any]],
    *,
    test_systems: list[str] | None = None,
    dev_rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Decode ``rows`` with the saved corrector and score it with every baseline (``evaluate_run``'s dict).

    Args:
        run_dir: the run's ``output_dir``.
        script_args: the run's ``LMCorArguments`` (``recipes/lmcor.py``: format, k, scoring).
        model_args: the run's ``ModelArguments`` (``recipes/lmcor.py``).
        rows: test rows with ``candidates`` (and ``systems`` when ``test_systems`` is given).
        test_systems: read only these systems' candidates (e.g. the training systems as a seen-systems control);
            ``None`` = the run's own ``test_systems``. An empty list reads every candidate of the rows.
        dev_rows: rows to choose the best single system on (held-out-system runs).

    Returns:
        ``evaluate_run``'s results plus ``timings`` (``generate_s``).
    """
    from toolkit.methods.lmcor import formats as lmcor
    from toolkit.methods.lmcor.evaluation import evaluate_run
    from toolkit.methods.lmcor.truncation import BudgetedFormat
    from toolkit.models import students

    if test_systems is not None:
        # The swap keeps LMCorArguments' own checks happy: the "train" side only names systems to keep apart.
        others = [s for s in script_args.train_systems + script_args.test_systems if s not in test_systems]
        script_args = dataclasses.replace(
            script_args, test_systems=list(test_systems), train_systems=others if test_systems else []
        )
    model, tokenizer, seq2seq = load_saved_corrector(run_dir, model_args)
    fmt = BudgetedFormat(
        lmcor.CorrectorFormat(script_args.separator, script_args.source_prefix, script_args.candidates_prefix),
        tokenizer,
        model_args.max_source_len,
        is_seq2seq=seq2seq,
    )
    if script_args.no_candidates:
        inputs = [f"{script_args.source_prefix}{lmcor.clean_text(r['source'])}" for r in rows]
    else:
        k = 1 if script_args.single_candidate else script_args.k
        inputs = lmcor.build_eval_inputs(rows, fmt, k=k, systems=script_args.test_systems or None)
    t0 = time.perf_counter()
    predictions = students.generate(
        model, tokenizer, inputs, is_seq2seq=seq2seq, max_new_tokens=script_args.max_new_tokens,
        num_beams=script_args.num_beams, batch_size=script_args.gen_batch_size,
        max_source_len=model_args.max_source_len, chat_template=model_args.chat_template and not seq2seq,
    )  # fmt: skip
    results = evaluate_run(script_args, rows, inputs, predictions, dev_rows=dev_rows or [])
    results["timings"] = {"generate_s": time.perf_counter() - t0}
    results["test_rows"] = len(rows)
    return results
