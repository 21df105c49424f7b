"""Distilling step-by-step inference: the label task alone, greedy, sharded across the processes of a run.

Only the label task runs at inference, so the rationales cost nothing at test time. :func:`predict_labels`
generates one share of the rows on every rank (:func:`toolkit.distributed.map_sharded`) and returns every rank's
predictions in row order, so validation scoring during training and the final test scoring make the same forward
passes on every rank (FSDP and ZeRO-3 need that) and split the work instead of repeating it.
"""

from __future__ import annotations

from collections.abc import Sequence

from toolkit.distributed import map_sharded
from toolkit.methods.step_by_step.config import StepByStepConfig
from toolkit.models.students import generate

__all__ = ["generate_predictions", "predict_labels"]


def generate_predictions(
    model,
    tokenizer,
    inputs: Sequence[str],
    *,
    is_seq2seq: bool,
    prefix: str,
    max_input_length: int = 256,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    chat_template: bool = False,
) -> list[str]:
    """Greedy-decode the label task for ``inputs`` (prompts built exactly as in training); first line of each.

    ``prefix`` is the label-task prefix the model was trained with (none for standard mode).
    """
    texts = generate(
        model,
        tokenizer,
        [prefix + x for x in inputs],
        is_seq2seq=is_seq2seq,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        max_source_len=max_input_length,
        chat_template=chat_template and not is_seq2seq,
    )
    # Labels are one line; a student that keeps talking after the label is judged on the label line only.
    return [t.strip().split("\n")[0].strip() for t in texts]


def predict_labels(model, tokenizer, rows: Sequence[dict], config: StepByStepConfig, *, is_seq2seq: bool) -> list[str]:
    """The label-task prediction of every row (each with ``input``), in row order, identical on every rank."""

    def predict_share(share: list[dict]) -> list[str]:
        return generate_predictions(
            model,
            tokenizer,
            [row["input"] for row in share],
            is_seq2seq=is_seq2seq,
            prefix=config.label_task_prefix,
            max_input_length=config.max_input_length,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.generation_batch_size,
            chat_template=config.chat_template,
        )

    return map_sharded(predict_share, rows)
