"""The end of every recipe run: one call that writes the same artifact set for every recipe and pushes when asked.

Every run directory gets, on the main process only:

- ``metrics.json``: the run's numbers (secret-looking keys redacted);
- ``results.md``: the results tables, the same text that goes into the model card;
- ``predictions.jsonl``: one row per scored test example;
- ``training_curves.png``: the trainer's log history (loss, learning rate, eval metrics);
- ``run_config.json``: every argument dataclass, secrets redacted;
- ``README.md``: the model card (:func:`toolkit.publishing.hub.render_model_card`);
- ``report.html``: the page built from all of the above (:mod:`toolkit.publishing.report_artifacts`).

With ``push`` set, the folder (or ``push.folder``) is uploaded in one commit. A recipe therefore ends in
``finish_run(...)`` and nothing else: adding a fifth recipe needs no new saving code.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.configs import redact, save_config
from toolkit.publishing import reporting
from toolkit.publishing.hub import DEFAULT_IGNORE_PATTERNS, push_to_hub, render_model_card
from toolkit.publishing.report_artifacts import report_from_run_dir

logger = logging.getLogger(__name__)

ARTIFACTS = (
    "metrics.json",
    "results.md",
    "predictions.jsonl",
    "training_curves.png",
    "run_config.json",
    "README.md",
    "report.html",
)

__all__ = ["ARTIFACTS", "Card", "Push", "finish_run"]


@dataclass
class Card:
    """What the model card says; see :func:`toolkit.publishing.hub.render_model_card` for each field."""

    base_model: str | None
    task: str
    recipe: str
    description: str
    model_name: str | None = None
    datasets: Sequence[str] = ()
    library_name: str | None = "transformers"
    lineage: Any = None
    extra_sections: dict[str, str] = field(default_factory=dict)


@dataclass
class Push:
    """Where to push: ``repo_id`` (``None`` = no push), the token (never saved) and what to leave out."""

    repo_id: str | None = None
    token: str | None = None
    private: bool = False
    folder: str | os.PathLike | None = None
    ignore_patterns: Iterable[str] = DEFAULT_IGNORE_PATTERNS


def finish_run(
    output_dir: str | os.PathLike,
    *,
    metrics: Mapping[str, Any],
    results_md: str,
    predictions: Iterable[Mapping[str, Any]],
    log_history: Sequence[Mapping[str, Any]] = (),
    config: Mapping[str, Any],
    card: Card,
    card_metrics: Mapping[str, Any] | None = None,
    push: Push | None = None,
    is_main: bool = True,
) -> dict[str, Any]:
    """Write the run's artifacts (see the module docstring) and push when ``push.repo_id`` is set.

    Args:
        output_dir: The run directory.
        metrics: Everything measured (written as JSON).
        results_md: The results tables (markdown).
        predictions: Scored test rows.
        log_history: ``trainer.state.log_history`` (or an equivalent list of per-step dicts).
        config: ``{section: dataclass}`` of the run's arguments (redacted on write).
        card: The model card's content.
        card_metrics: The card's ``model-index`` metrics (default: ``metrics``'s numbers).
        push: Hub upload (``None`` = none).
        is_main: Only the main process writes; the others return at once.

    Returns:
        ``{"output_dir", "hub_url"}``.
    """
    if not is_main:
        return {"output_dir": str(output_dir), "hub_url": None}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reporting.write_metrics(out, dict(metrics))
    (out / "results.md").write_text(results_md, encoding="utf-8")
    reporting.write_jsonl(out / "predictions.jsonl", predictions)
    reporting.plot_training_curves(list(log_history), out / "training_curves.png")
    save_config(out / "run_config.json", **config)
    text = render_model_card(
        model_name=card.model_name or out.resolve().name,
        base_model=card.base_model,
        task=card.task,
        recipe=card.recipe,
        metrics=dict(card_metrics if card_metrics is not None else metrics),
        lineage=card.lineage,
        # JSON round trip: TrainingArguments hold str-Enums (IntervalStrategy...) that the card's YAML rejects.
        training_config=json.loads(json.dumps(redact(dict(config)), default=str)),
        datasets=list(card.datasets),
        library_name=card.library_name,
        description=card.description,
        extra_sections={"Results": results_md, **card.extra_sections},
    )
    (out / "README.md").write_text(text, encoding="utf-8")
    report_from_run_dir(out)
    url = None
    if push is not None and push.repo_id:
        folder = push.folder or out
        if Path(folder).resolve() != out.resolve():  # e.g. a merged checkpoint: it gets the card too
            (Path(folder) / "README.md").write_text(text, encoding="utf-8")
        url = push_to_hub(
            folder, push.repo_id, token=push.token, private=push.private, ignore_patterns=list(push.ignore_patterns)
        )
        logger.info("Pushed %s to %s", folder, url)
        if "hub_url" in metrics:  # the local record says where the run went (the pushed copy cannot)
            reporting.write_metrics(out, {**metrics, "hub_url": url})
    return {"output_dir": str(out), "hub_url": url}
