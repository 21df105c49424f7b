"""Hub model / dataset cards for distilled students and teacher-generated datasets.

:func:`render_model_card` and :func:`render_dataset_card` turn a run's metrics, config and
:class:`~toolkit.publishing.lineage.Lineage` into Hub cards whose YAML metadata (``base_model``, ``datasets``,
``model-index`` with the metrics, ``tags`` incl. ``distill-toolkit``) is built with ``huggingface_hub``'s own
card-data classes, so the Hub accepts it. Every config and lineage dict goes through
:func:`toolkit.publishing.reporting.redact_secrets` (an alias of ``toolkit.configs.redact``, which spares token counts),
and the rendered text is scrubbed of any secret held in the environment.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCardData, EvalResult, ModelCardData

from toolkit.configs import REDACTED, SECRET_FIELD_PATTERN
from toolkit.publishing.base_model import BaseModelRef, describe_base
from toolkit.publishing.lineage import Lineage, is_hub_id, lineage_rows, strip_local_paths
from toolkit.publishing.reporting import markdown_table
from toolkit.publishing.reporting import redact_secrets as redact

__all__ = [
    "FRAMEWORKS",
    "citation_block",
    "rows_table",
    "TASK_TYPES",
    "TOOLKIT_TAG",
    "framework_versions",
    "render_dataset_card",
    "render_model_card",
    "save_card",
]

TOOLKIT_TAG = "distill-toolkit"

# Toolkit task families -> Hub task types (model-index ``task.type`` / ``pipeline_tag``).
TASK_TYPES = {
    **dict.fromkeys(("gec", "data_to_text"), "text2text-generation"),
    **dict.fromkeys(("translation", "mt"), "translation"),
    **dict.fromkeys(("classification", "nli", "intent"), "text-classification"),
    **dict.fromkeys(("slots", "intent_slot"), "token-classification"),
    **dict.fromkeys(("math", "multitask"), "text-generation"),
    "summarization": "summarization",
    "qa": "question-answering",
}

_SPLIT_NAMES = {"train", "validation", "dev", "eval", "test"}
_HPARAM_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "seed")
_HPARAM_KEYS += ("gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio", "weight_decay", "alpha")
_HPARAM_KEYS += ("lora_r", "lora_alpha")


#: Distributions whose versions a card lists (the ones a reader needs to reproduce or load the model).
FRAMEWORKS = ("distill-toolkit", "transformers", "peft", "trl", "torch", "datasets", "accelerate", "huggingface-hub")


def framework_versions(names: Sequence[str] = FRAMEWORKS) -> dict[str, str]:
    """``{distribution: version}`` of the installed ``names`` (missing ones left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _framework_text() -> str:
    lines = [f"- {name} {version}" for name, version in framework_versions().items()]
    return "Trained with distill-toolkit (Python package `toolkit`).\n\n" + "\n".join(lines)


def _data_text(datasets: Sequence[str], data_rows: Mapping[str, int] | None) -> str:
    """Where the training and evaluation rows came from: Hub ids linked, local names as plain text, row counts."""
    named = []
    for name in datasets:
        if is_hub_id(name):
            named.append(f"[`{name}`](https://huggingface.co/datasets/{name})")
        else:
            named.append(f"`{strip_local_paths(name)}` (local data, not on the Hub)")
    text = ("Data: " + ", ".join(named) + ".") if named else ""
    if data_rows:
        text += "\n\n" + rows_table(data_rows)
    return text


def rows_table(data_rows: Mapping[str, int]) -> str:
    """A ``split | rows`` table: how many rows the student trained, was selected and was tested on."""
    return markdown_table([{"split": split, "rows": count} for split, count in data_rows.items()])


def citation_block(bibtex: str) -> str:
    """The method paper's BibTeX entry as a card block."""
    return f"```bibtex\n{bibtex.strip()}\n```"


def _secret_values() -> list[str]:
    """Secret-looking env var values (HF_TOKEN, OPENAI_API_KEY...) long enough to scrub from rendered text."""
    return [v for k, v in os.environ.items() if SECRET_FIELD_PATTERN.search(k) and v and len(v) >= 8]


def _scrub(text: str) -> str:
    # Key-based redaction cannot catch a secret stored under an innocent key (e.g. inside a URL); as a second
    # line of defence, remove any value of a secret env var that made it into the card text.
    for secret in _secret_values():
        text = text.replace(secret, REDACTED)
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flatten_metrics(metrics: dict, prefix: str = "") -> list[tuple[str | None, str, Any]]:
    """``{"test": {"bleu": 1}, "acc": 2}`` -> ``[("test", "bleu", 1), (None, "acc", 2)]`` (deeper keys joined by /)."""
    rows: list[tuple[str | None, str, Any]] = []
    for key, value in metrics.items():
        if _is_number(getattr(value, "score", None)):  # toolkit.evaluation.metrics.MetricResult: report its score
            value = value.score
        if isinstance(value, dict):
            for group, name, val in _flatten_metrics(value):
                rows.append((str(key) if group is None else f"{key}/{group}", name, val))
        else:
            rows.append((None, f"{prefix}{key}", value))
    return rows


def _yaml_block(obj: Any) -> str:
    text = yaml.safe_dump(strip_local_paths(redact(obj)), sort_keys=True, allow_unicode=True)
    return "```yaml\n" + text.rstrip() + "\n```"


def _assemble(card_data, sections: list[tuple[str, str]], title: str) -> str:
    body = [f"# {title}"]
    body += [f"## {heading}\n\n{text.strip()}" if heading else text.strip() for heading, text in sections if text]
    text = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(body) + "\n"
    return _scrub(text)


def render_model_card(
    *,
    model_name: str,
    base_model: str | BaseModelRef | None,
    task: str,
    recipe: str,
    metrics: dict,
    lineage: Lineage | None = None,
    training_config: dict | None = None,
    datasets: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    license: str = "apache-2.0",  # noqa: A002 - matches the Hub metadata key
    extra_sections: dict[str, str] | None = None,
    library_name: str | None = "transformers",
    summary: str | None = None,
    description: str | None = None,
    data_rows: Mapping[str, int] | None = None,
    citation: str | None = None,
) -> str:
    """Render a Hub model card (README.md text) for a distilled student.

    Args:
        model_name: Name shown as title and used as the ``model-index`` name.
        base_model: The student's initial weights: a :class:`~toolkit.publishing.base_model.BaseModelRef`, or what
            the run loaded (``local:<name>``, a folder, a Hub id), described by
            :func:`~toolkit.publishing.base_model.describe_base`. Only Hub ids enter the metadata; an offline GGUF
            base is named by its upstream id with ``base_model_relation`` and a warning in the text.
        task: Toolkit task family (``gec``, ``classification``...) or a Hub task type.
        recipe: ``lmcor``, ``step_by_step``, ``qlora_multitask``, ``llmembed`` (or any other name).
        metrics: ``{metric: value}`` or ``{split_or_group: {metric: value}}``. Numeric values go to
            ``model-index``; all values go to the metrics table.
        lineage: Teacher / data provenance.
        training_config: Config dict or dataclass, rendered redacted.
        datasets: Dataset ids or local names used for training/eval (only ``namespace/name`` Hub ids enter the
            metadata; the others are named in the text).
        tags: Extra tags; ``distill-toolkit`` and the recipe name are always added.
        license: License id for the metadata.
        extra_sections: ``{heading: markdown}`` appended after the standard sections.
        library_name: ``library_name`` metadata (``"peft"`` for adapters).
        summary: Custom first paragraph; a default one is written from the other fields.
        description: How the recipe trains (the paper's method in a sentence or two), from the recipe itself: the
            library knows no recipe names.
        data_rows: ``{split: rows}`` the student trained and was evaluated on.
        citation: The method paper's BibTeX entry.

    Returns:
        The card text: YAML front matter then markdown sections.
    """
    datasets = list(datasets or [])
    task_type = TASK_TYPES.get(task, task)
    hub_datasets = [d for d in datasets if is_hub_id(d)]
    eval_dataset = hub_datasets[0] if hub_datasets else (datasets[0] if datasets else "custom")
    eval_results = []
    flat = _flatten_metrics(metrics or {})
    for group, name, value in flat:
        if not _is_number(value):
            continue
        split = group if group in _SPLIT_NAMES else None
        eval_results.append(
            EvalResult(
                task_type=task_type,
                task_name=task,
                dataset_type=eval_dataset,
                dataset_name=eval_dataset,
                dataset_split=split,
                metric_type=name,
                metric_name=name if group is None or split else f"{name} ({group})",
                metric_value=float(value),
            )
        )
    base = describe_base(base_model, pin_commit=False) if isinstance(base_model, str) else base_model
    base_hub_id = base.upstream_id if base is not None and is_hub_id(base.upstream_id) else None
    relation = None
    if base_hub_id:
        relation = "adapter" if library_name == "peft" else "finetune"
    teacher = lineage.teacher_id if lineage else None
    toolkit_meta = {"recipe": recipe, "task": task}
    if lineage is not None:
        toolkit_meta["lineage"] = lineage.to_dict()
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_hub_id,
        datasets=hub_datasets or None,
        eval_results=eval_results or None,
        license=license,
        library_name=library_name,
        pipeline_tag=task_type if task_type in set(TASK_TYPES.values()) else None,
        tags=list(dict.fromkeys([TOOLKIT_TAG, "distillation", recipe, *(tags or [])])),
        distill_toolkit=toolkit_meta,
        base_model_relation=relation,
    )

    if summary is None:
        summary = f"**{model_name}** is a small student model for *{task}*, trained with the `{recipe}` recipe"
        if base is not None:
            named = base.loaded_from if base.is_gguf_derived else (base.hub_id or base.loaded_from)
            summary += f" of distill-toolkit from `{named}`"
        else:
            summary += " of distill-toolkit"
        summary += f", distilled from the teacher `{teacher}`." if teacher else "."
    training = description or f"Recipe `{recipe}`."
    if training_config:
        hparams = _find_hparams(redact(training_config))
        if hparams:
            rows = [{"hyperparameter": k, "value": v} for k, v in hparams.items()]
            training += "\n\n" + markdown_table(rows, floatfmt=".6g")  # keep learning rates like 3e-4 readable
    metric_rows = [{"split": g or "–", "metric": n, "value": v} for g, n, v in flat]
    sections = [
        ("", summary),
        ("Base model", base.card_text() if base else ""),
        ("How it was trained", training),
        ("Training and evaluation data", _data_text(datasets, data_rows)),
        ("Lineage", markdown_table(lineage_rows(lineage), floatfmt=".4g") if lineage else ""),
        ("Evaluation", markdown_table(metric_rows, floatfmt=".4f") if metric_rows else "No metrics recorded."),
        ("Training configuration", _yaml_block(training_config) if training_config else ""),
    ]
    sections += list((extra_sections or {}).items())
    sections.append(("Framework versions", _framework_text()))
    if citation:
        sections.append(("Citation", citation_block(citation)))
    return _assemble(card_data, sections, model_name)


def _find_hparams(config: Any) -> dict:
    """Pick well-known hyperparameters out of a (possibly nested) redacted config dict."""
    found: dict = {}
    if isinstance(config, dict):
        for key, value in config.items():
            if key in _HPARAM_KEYS and not isinstance(value, (dict, list)) and key not in found:
                found[key] = value
            elif isinstance(value, dict):
                for k, v in _find_hparams(value).items():
                    found.setdefault(k, v)
    return found


def _size_category(num_rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    for bound, label in bounds:
        if num_rows < bound:
            return label
    return "n>1B" if num_rows < 10**12 else "n>1T"


def render_dataset_card(
    *,
    name: str,
    description: str,
    lineage: Lineage | None,
    num_rows: int | dict[str, int],
    columns: Sequence[str] | dict[str, str],
    stats: dict | None = None,
    license: str = "apache-2.0",  # noqa: A002 - matches the Hub metadata key
    tags: Sequence[str] | None = None,
    task_categories: Sequence[str] | None = None,
    source_datasets: Sequence[str] | None = None,
    generation_config: dict | None = None,
    configs: Sequence[dict] | None = None,
    extras: str | None = None,
) -> str:
    """Render a Hub dataset card for a teacher-generated dataset.

    Args:
        name: Pretty name / title.
        description: What the dataset is (first paragraph).
        lineage: Teacher, template hash, sampling, cost of the generation job.
        num_rows: Total rows, or ``{split: rows}``.
        columns: Column names, or ``{column: description}``.
        stats: Summary statistics (parse rate, mean candidates...), rendered as a table.
        license: License id for the metadata.
        tags: Extra tags (``distill-toolkit`` and ``synthetic`` are always added).
        task_categories: Hub task categories for the metadata.
        source_datasets: Input datasets the prompts came from.
        generation_config: The data-gen job config, rendered redacted.
        configs: The ``configs:`` metadata block (``config_name`` + ``data_files``): what ``load_dataset`` returns.
        extras: How to load the data and what else the repo holds (a "Files" section).

    Returns:
        The card text.
    """
    splits = num_rows if isinstance(num_rows, dict) else {"train": num_rows}
    total = sum(splits.values())
    toolkit_meta = {"lineage": lineage.to_dict()} if lineage else {}
    card_data = DatasetCardData(
        license=license,
        pretty_name=name,
        tags=list(dict.fromkeys([TOOLKIT_TAG, "synthetic", "distillation", *(tags or [])])),
        size_categories=_size_category(total),
        task_categories=list(task_categories) if task_categories else None,
        source_datasets=[d for d in source_datasets or [] if is_hub_id(d)] or None,
        distill_toolkit=toolkit_meta or None,
        configs=list(configs) if configs else None,
    )
    column_rows = (
        [{"column": c, "description": d} for c, d in columns.items()]
        if isinstance(columns, dict)
        else [{"column": c} for c in columns]
    )
    structure = markdown_table([{"split": s, "rows": n} for s, n in splits.items()])
    structure += "\n" + markdown_table(column_rows)
    sections = [
        ("", description),
        ("Lineage", markdown_table(lineage_rows(lineage), floatfmt=".4g") if lineage else ""),
        ("Source data", ", ".join(f"`{strip_local_paths(d)}`" for d in source_datasets) if source_datasets else ""),
        ("Dataset structure", structure),
        ("Files", extras or ""),
        ("Statistics", markdown_table([{"statistic": k, "value": v} for k, v in redact(stats or {}).items()])),
        ("Generation configuration", _yaml_block(generation_config) if generation_config else ""),
    ]
    return _assemble(card_data, sections, name)


def save_card(folder: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as ``folder/README.md`` (the file the Hub renders as the card) and return its path."""
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_scrub(text), encoding="utf-8")
    return path
