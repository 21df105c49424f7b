"""Run tracking and resuming: TensorBoard logs for our own loops, ``--resume_from_checkpoint`` for the Trainer's.

The Trainer-based recipes (LMCor, step-by-step, QLoRA multi-task) log through transformers' own
``TensorBoardCallback`` (``--report_to tensorboard``): train and eval scalars of one model go to
``<output_dir>/runs/<date>_<host>/`` (tags ``train/*`` and ``eval/*``), and every baseline model trains with
its own ``output_dir`` under ``<run>/baselines/``, so each sub-model is its own TensorBoard run. Loops the
Trainer does not run (the LLMEmbed head) write the same layout with :func:`write_history`.

At the end of a run :func:`log_final_metrics` sends the final results tables (``final/<table>/<metric>``) to every
``report_to`` backend: through the Trainer's callback handler (TensorBoard, wandb, trackio... each integration's own
``on_log``), or for a loop of our own into its TensorBoard folder. :func:`dev_curve` reads the dev evaluations of a
Trainer's log history into the ``dev_curve`` series a plan chooses its step count on.

``tensorboard`` is an optional dependency: ``pip install "distill-toolkit[tensorboard]"``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)

TENSORBOARD_INSTALL = 'pip install "distill-toolkit[tensorboard]"'
#: What a loop of our own can report to (the Trainer's recipes take every transformers integration).
OWN_LOOP_REPORT_TO = ("none", "tensorboard")
#: ``--resume_from_checkpoint`` values that mean "the latest checkpoint-* in output_dir".
LATEST = ("true", "latest", "yes", "1")
#: History keys of :func:`toolkit.methods.llmembed.head.train_head` -> the Trainer's tag names, so curves line up in TensorBoard.
HEAD_TAGS = {"train_loss": "train/loss", "val_loss": "eval/loss", "val_accuracy": "eval/accuracy"}


def report_to_list(value: str | Iterable[str] | None) -> list[str]:
    """``report_to`` as a list of integrations: ``None`` / ``"none"`` / ``[]`` -> ``[]``."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [v for v in values if v and v != "none"]


def check_report_to(value: str | Iterable[str] | None, supported: Sequence[str] = OWN_LOOP_REPORT_TO) -> list[str]:
    """Validate ``report_to`` for a loop of our own; returns the integrations to use (``[]`` = none).

    Raises:
        ValueError: an integration the loop cannot log to (``all`` included: name them).
        ImportError: ``tensorboard`` asked for but not installed (with the pip command of the extra).
    """
    values = report_to_list(value)
    unknown = [v for v in values if v not in supported]
    if unknown:
        raise ValueError(f"report_to {unknown} is not supported here; use one of {list(supported)}")
    require_tensorboard(values)
    return values


def require_tensorboard(report_to: str | Iterable[str] | None = ("tensorboard",)):
    """Fail early, naming the extra, when ``report_to`` includes tensorboard and it is missing.

    Trainer recipes call it before any long step (candidate generation, data loading) so the error comes at once
    instead of at ``trainer.train()`` with transformers' generic message. Returns ``SummaryWriter`` (or ``None`` when
    tensorboard is not asked for).
    """
    wanted = report_to_list(report_to)
    if "tensorboard" not in wanted and "all" not in wanted:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: fails here when it is missing
    except ImportError as exc:
        if "tensorboard" not in wanted:  # "all" = whatever is installed: nothing to complain about
            return None
        raise ImportError(f"report_to=tensorboard needs the tensorboard package: {TENSORBOARD_INSTALL}") from exc
    return SummaryWriter


def write_history(
    history: Sequence[Mapping],
    log_dir: str | os.PathLike,
    *,
    step_key: str = "epoch",
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write every numeric field of each history entry as a TensorBoard scalar at step ``entry[step_key]``.

    Args:
        history: One mapping per step/epoch, e.g. ``train_head``'s ``history``.
        log_dir: The run's TensorBoard folder (e.g. ``<output_dir>/runs/<variant>``).
        step_key: The field giving the x axis; it is not written as a scalar itself.
        tags: Field -> tag renames (default :data:`HEAD_TAGS`); other fields keep their name.

    Returns:
        ``log_dir``. Earlier event files there are removed first: a re-run into the same output dir replaces the
        curves instead of drawing a second, overlapping one.
    """
    writer_cls = require_tensorboard()
    tags = HEAD_TAGS if tags is None else tags
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("events.out.tfevents.*"):
        old.unlink()
    writer = writer_cls(log_dir=str(log_dir))
    try:
        for entry in history:
            step = int(entry[step_key])
            for key, value in entry.items():
                if key != step_key and isinstance(value, (int, float)) and not isinstance(value, bool):
                    writer.add_scalar(tags.get(key, key), value, step)
    finally:
        writer.close()
    logger.info("TensorBoard: %d points -> %s", len(history), log_dir)
    return log_dir


FINAL_PREFIX = "final"


def flatten_final_metrics(tables: Mapping, prefix: str = FINAL_PREFIX) -> dict[str, float]:
    """``{"test": {"gleu": 70.1}}`` -> ``{"final/test/gleu": 70.1}``: every number of the nested tables.

    Lists (predictions, learning curves) and strings are left out: the tracker gets the table's numbers.
    A metric object with a numeric ``score`` (``toolkit.evaluation.metrics.MetricResult``) reports its score.
    """
    flat: dict[str, float] = {}
    for key, value in tables.items():
        name = f"{prefix}/{key}"
        score = getattr(value, "score", None)
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            value = score
        if isinstance(value, Mapping):
            flat.update(flatten_final_metrics(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def log_final_metrics(
    tables: Mapping,
    *,
    trainer=None,
    log_dir: str | os.PathLike | None = None,
    step: int | None = None,
) -> dict[str, float]:
    """Send a run's final results tables to its trackers.

    Args:
        tables: ``{table: {metric: value}}`` (any nesting; see :func:`flatten_final_metrics`).
        trainer: A ``transformers.Trainer``: the metrics go through its callback handler's ``on_log``, so every
            ``report_to`` integration (TensorBoard, wandb, trackio...) records them at the last global step (their
            ``rewrite_logs`` shows them as ``train/final/...``). The trainer's ``log_history`` is left as it is (the
            training curves stay training curves).
        log_dir: For a loop of our own (LLMEmbed's head): the TensorBoard folder to add the scalars to.
        step: The x position for ``log_dir`` (default 0).

    Returns:
        The flattened metrics that were logged.
    """
    flat = flatten_final_metrics(tables)
    if trainer is not None:
        trainer.callback_handler.on_log(trainer.args, trainer.state, trainer.control, dict(flat))
    if log_dir is not None:
        writer_cls = require_tensorboard()
        writer = writer_cls(log_dir=str(log_dir))
        try:
            for name, value in flat.items():
                writer.add_scalar(name, value, step or 0)
        finally:
            writer.close()
    logger.info("Logged %d final metrics to the trackers", len(flat))
    return flat


def dev_curve(
    log_history: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("eval_loss",)
) -> list[dict[str, Any]]:
    """The dev curve of a trainer's ``state.log_history``: ``[{"step", <metric>...}, ...]``, one point per evaluation.

    A plan chooses a step count on this series (``choices:`` in ``experiments/plans/``), so every recipe that
    evaluates on dev during training writes it to ``metrics.json`` as ``dev_curve``.

    Args:
        log_history: ``trainer.state.log_history``; its evaluation entries carry the ``eval_*`` metrics.
        metrics: The metrics every point holds (e.g. ``("eval_loss", "eval_accuracy")``); an entry lacking any of
            them is not an evaluation of this curve and is left out.

    Returns:
        The points in log order, ``step`` an int and every metric a float.
    """
    return [
        {"step": int(entry["step"]), **{name: float(entry[name]) for name in metrics}}
        for entry in log_history
        if "step" in entry and all(name in entry for name in metrics)
    ]


def resume_checkpoint(training_args) -> str | None:
    """``--resume_from_checkpoint`` as ``Trainer.train`` takes it: a checkpoint folder, or ``None``.

    ``true`` (or ``latest``) means the newest ``checkpoint-<step>`` in ``output_dir``, the folder a killed run
    left behind; a path must exist. Resolved at the start of a recipe, so a wrong value fails before any
    teacher call or data loading.

    Raises:
        FileNotFoundError: no checkpoint to resume from.
    """
    value = training_args.resume_from_checkpoint
    if value in (None, False, "", "false", "False", "no", "none"):
        return None
    out = training_args.output_dir
    if value is True or str(value).lower() in LATEST:
        last = get_last_checkpoint(out) if os.path.isdir(out) else None
        if last is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint {value}: no checkpoint-<step> folder in {out} (checkpoints are written "
                "with --save_strategy steps --save_steps N)"
            )
        logger.info("Resuming from %s", last)
        return last
    if not os.path.isdir(value):
        raise FileNotFoundError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    return str(value)
