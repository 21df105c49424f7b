"""Model / dataset cards with distillation lineage, and publishing to the Hugging Face Hub.

A distilled student is only reproducible if its card says which teacher, prompt template, sampling settings
and generated dataset produced it. :class:`Lineage` carries those facts; :func:`render_model_card` and
:func:`render_dataset_card` turn them into Hub cards whose YAML metadata (``base_model``, ``datasets``,
``model-index`` with the metrics, ``tags`` incl. ``distill-toolkit``) is built with ``huggingface_hub``'s own
card-data classes, so the Hub accepts it. Every config and lineage dict goes through
:func:`toolkit.reporting.redact_secrets` (an alias of ``toolkit.configs.redact``, which spares token counts),
and the rendered text is scrubbed of any secret held in the environment.

:func:`push_to_hub` uploads a run folder (create repo + one commit). Trainer checkpoints and optimizer /
scheduler / RNG states are left out by default (:data:`DEFAULT_IGNORE_PATTERNS`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from toolkit.configs import REDACTED, SECRET_FIELD_PATTERN
from toolkit.reporting import markdown_table
from toolkit.reporting import redact_secrets as redact

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_IGNORE_PATTERNS",
    "Lineage",
    "push_to_hub",
    "render_dataset_card",
    "render_model_card",
    "save_card",
]

TOOLKIT_TAG = "distill-toolkit"

# Left out of uploads unless the caller passes its own ``ignore_patterns``: Trainer checkpoints, then optimizer /
# scheduler / grad-scaler / RNG states (large, useless for inference). Matched with fnmatch against paths relative
# to the folder, where ``*`` also matches ``/``, so "checkpoint-*" drops whole checkpoint-500/ dirs.
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = ("checkpoint-*", "*/checkpoint-*", "*optimizer.pt", "*optimizer.bin")
DEFAULT_IGNORE_PATTERNS += ("*scheduler.pt", "*scaler.pt", "*rng_state*.pth", "*.lock", "*.tmp")

# Named local defaults (toolkit.models) -> the Hub ids they are copies of, so ``base_model`` metadata is valid.
_LOCAL_MODEL_HUB_IDS = {
    "local:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "local:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
}
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

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


@dataclasses.dataclass
class Lineage:
    """Where a student's training data came from.

    Attributes:
        teacher_id: Stable teacher id (backend, model, host) as recorded in the generated rows.
        template_hash: Hash of the prompt template used to query the teacher.
        sampling: Sampling parameters (temperature, top_p, n, max_tokens, ...).
        generated_dataset: Name or path of the generated dataset.
        dataset_fingerprint: Content fingerprint of the generated dataset (``Dataset._fingerprint`` or a hash).
        dataset_revision: Hub revision / commit of the generated dataset, if published.
        base_model: Model the student was initialised from.
        cost_usd: Total teacher cost of the generation job.
        num_teacher_calls: Number of teacher requests made.
        extra: Free-form additional facts (token counts, seeds...). Redacted before rendering.
    """

    teacher_id: str | None = None
    template_hash: str | None = None
    sampling: dict = dataclasses.field(default_factory=dict)
    generated_dataset: str | None = None
    dataset_fingerprint: str | None = None
    dataset_revision: str | None = None
    base_model: str | None = None
    cost_usd: float | None = None
    num_teacher_calls: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly dict with secrets redacted and ``None`` fields dropped."""
        return {k: v for k, v in redact(dataclasses.asdict(self)).items() if v not in (None, {}, [])}

    @classmethod
    def from_generated(
        cls,
        data: Any,
        *,
        generated_dataset: str | None = None,
        dataset_revision: str | None = None,
        base_model: str | None = None,
    ) -> Lineage:
        """Collect lineage from a generated dataset (``datasets.Dataset`` or a list of row dicts).

        Reads the lineage columns every data-gen job writes (``teacher_id``, ``template_hash``, ``sampling`` and
        ``usage`` as JSON). Usage is summed best-effort: ``cost_usd`` / ``prompt_tokens`` / ``completion_tokens``
        when present, and one teacher call per row unless the usage says ``num_calls``.
        """
        if hasattr(data, "column_names"):
            columns = {
                c: data[c] for c in ("teacher_id", "template_hash", "sampling", "usage") if c in data.column_names
            }
            fingerprint = getattr(data, "_fingerprint", None)
        else:
            rows = list(data)
            columns = {c: [r.get(c) for r in rows] for c in ("teacher_id", "template_hash", "sampling", "usage")}
            blob = json.dumps(rows, sort_keys=True, default=str).encode()
            fingerprint = hashlib.sha256(blob).hexdigest()[:16]

        def distinct(values):
            return sorted({str(v) for v in values if v not in (None, "")})

        samplings = []
        for raw in columns.get("sampling") or []:
            value = _maybe_json(raw)
            if value and value not in samplings:
                samplings.append(value)
        cost, calls, tokens = 0.0, 0, {"prompt_tokens": 0, "completion_tokens": 0}
        has_cost = False
        for raw in columns.get("usage") or []:
            usages = _maybe_json(raw)
            for usage in usages if isinstance(usages, list) else [usages]:
                if not isinstance(usage, dict):
                    continue
                calls += int(usage.get("num_calls", 1))
                if isinstance(usage.get("cost_usd"), (int, float)):
                    cost, has_cost = cost + usage["cost_usd"], True
                for key in tokens:
                    tokens[key] += int(usage.get(key) or 0)
        teachers, templates = distinct(columns.get("teacher_id") or []), distinct(columns.get("template_hash") or [])
        return cls(
            teacher_id=", ".join(teachers) or None,
            template_hash=", ".join(templates) or None,
            sampling=samplings[0] if len(samplings) == 1 else ({"variants": samplings} if samplings else {}),
            generated_dataset=generated_dataset,
            dataset_fingerprint=fingerprint,
            dataset_revision=dataset_revision,
            base_model=base_model,
            cost_usd=cost if has_cost else None,
            num_teacher_calls=calls or None,
            extra={k: v for k, v in tokens.items() if v},
        )


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _hub_id(name: str | None) -> str | None:
    """``name`` as a Hub repo id for card metadata, or None when it is a local path (the Hub rejects those)."""
    if not name:
        return None
    name = _LOCAL_MODEL_HUB_IDS.get(name, name)
    if os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name) or not _HUB_ID_RE.match(name):
        return None
    return name


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
        if _is_number(getattr(value, "score", None)):  # toolkit.metrics.MetricResult: report its score
            value = value.score
        if isinstance(value, dict):
            for group, name, val in _flatten_metrics(value):
                rows.append((str(key) if group is None else f"{key}/{group}", name, val))
        else:
            rows.append((None, f"{prefix}{key}", value))
    return rows


def _lineage_rows(lineage: Lineage) -> list[dict]:
    data = lineage.to_dict()
    labels = {
        "teacher_id": "Teacher",
        "template_hash": "Prompt template hash",
        "sampling": "Sampling",
        "generated_dataset": "Generated dataset",
        "dataset_fingerprint": "Dataset fingerprint",
        "dataset_revision": "Dataset revision",
        "base_model": "Student base model",
        "num_teacher_calls": "Teacher calls",
        "cost_usd": "Teacher cost (USD)",
    }
    rows = []
    for key, label in labels.items():
        if key in data:
            value = data[key]
            if key == "sampling":
                value = f"`{json.dumps(value, sort_keys=True)}`"
            elif key == "cost_usd":
                value = f"{value:.4f}"
            elif key in ("teacher_id", "template_hash", "dataset_fingerprint", "dataset_revision"):
                value = f"`{value}`"
            rows.append({"field": label, "value": value})
    for key, value in sorted(data.get("extra", {}).items()):
        rows.append({"field": key, "value": json.dumps(value) if isinstance(value, (dict, list)) else value})
    return rows


def _yaml_block(obj: Any) -> str:
    import yaml

    return "```yaml\n" + yaml.safe_dump(redact(obj), sort_keys=True, allow_unicode=True).rstrip() + "\n```"


def _assemble(card_data, sections: list[tuple[str, str]], title: str) -> str:
    body = [f"# {title}"]
    body += [f"## {heading}\n\n{text.strip()}" if heading else text.strip() for heading, text in sections if text]
    text = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n\n".join(body) + "\n"
    return _scrub(text)


def render_model_card(
    *,
    model_name: str,
    base_model: str | None,
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
) -> str:
    """Render a Hub model card (README.md text) for a distilled student.

    Args:
        model_name: Name shown as title and used as the ``model-index`` name.
        base_model: Hub id or local path of the student's initial weights (local paths stay out of the metadata).
        task: Toolkit task family (``gec``, ``classification``...) or a Hub task type.
        recipe: ``lmcor``, ``step_by_step``, ``qlora_multitask``, ``llmembed`` (or any other name).
        metrics: ``{metric: value}`` or ``{split_or_group: {metric: value}}``. Numeric values go to
            ``model-index``; all values go to the metrics table.
        lineage: Teacher / data provenance.
        training_config: Config dict or dataclass, rendered redacted.
        datasets: Dataset ids or paths used for training/eval (only Hub ids enter the metadata).
        tags: Extra tags; ``distill-toolkit`` and the recipe name are always added.
        license: License id for the metadata.
        extra_sections: ``{heading: markdown}`` appended after the standard sections.
        library_name: ``library_name`` metadata (``"peft"`` for adapters).
        summary: Custom first paragraph; a default one is written from the other fields.
        description: How the recipe trains (the paper's method in a sentence or two), from the recipe itself: the
            library knows no recipe names.

    Returns:
        The card text: YAML front matter then markdown sections.
    """
    from huggingface_hub import EvalResult, ModelCardData

    datasets = list(datasets or [])
    task_type = TASK_TYPES.get(task, task)
    hub_datasets = [d for d in (_hub_id(d) for d in datasets) if d]
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
    base_hub_id = _hub_id(base_model)
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
    )

    if summary is None:
        summary = f"**{model_name}** is a small student model for *{task}*, trained with the `{recipe}` recipe"
        summary += f" of distill-toolkit from `{base_model}`" if base_model else " of distill-toolkit"
        summary += f", distilled from the teacher `{teacher}`." if teacher else "."
    training = description or f"Recipe `{recipe}`."
    if datasets:
        training += "\n\nTraining / evaluation data: " + ", ".join(f"`{d}`" for d in datasets) + "."
    if training_config:
        hparams = _find_hparams(redact(training_config))
        if hparams:
            rows = [{"hyperparameter": k, "value": v} for k, v in hparams.items()]
            training += "\n\n" + markdown_table(rows, floatfmt=".6g")  # keep learning rates like 3e-4 readable
    metric_rows = [{"split": g or "–", "metric": n, "value": v} for g, n, v in flat]
    sections = [
        ("", summary),
        ("How it was trained", training),
        ("Lineage", markdown_table(_lineage_rows(lineage), floatfmt=".4g") if lineage else ""),
        ("Evaluation", markdown_table(metric_rows, floatfmt=".4f") if metric_rows else "No metrics recorded."),
        ("Training configuration", _yaml_block(training_config) if training_config else ""),
    ]
    sections += list((extra_sections or {}).items())
    sections.append(("Framework", "Trained with distill-toolkit (Python package `toolkit`)."))
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

    Returns:
        The card text.
    """
    from huggingface_hub import DatasetCardData

    splits = num_rows if isinstance(num_rows, dict) else {"train": num_rows}
    total = sum(splits.values())
    toolkit_meta = {"lineage": lineage.to_dict()} if lineage else {}
    card_data = DatasetCardData(
        license=license,
        pretty_name=name,
        tags=list(dict.fromkeys([TOOLKIT_TAG, "synthetic", "distillation", *(tags or [])])),
        size_categories=_size_category(total),
        task_categories=list(task_categories) if task_categories else None,
        source_datasets=[d for d in (_hub_id(d) for d in source_datasets or []) if d] or None,
        distill_toolkit=toolkit_meta or None,
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
        ("Lineage", markdown_table(_lineage_rows(lineage), floatfmt=".4g") if lineage else ""),
        ("Source data", ", ".join(f"`{d}`" for d in source_datasets) if source_datasets else ""),
        ("Dataset structure", structure),
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


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
    ignore_patterns: Iterable[str] | None = DEFAULT_IGNORE_PATTERNS,
    allow_patterns: Iterable[str] | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it in one commit.

    Args:
        folder: Local run / export folder.
        repo_id: ``namespace/name`` (a bare name goes to the token owner's namespace).
        repo_type: ``"model"`` or ``"dataset"``.
        token: Hub token; defaults to ``HF_TOKEN`` or the stored ``hf auth login`` token. Never logged.
        private: Create the repo as private (an existing repo's visibility is left unchanged).
        commit_message: Commit title; a default naming the folder is used otherwise.
        revision: Branch to commit to (created from ``main`` if missing).
        ignore_patterns: fnmatch patterns (relative paths) to leave out; defaults to
            :data:`DEFAULT_IGNORE_PATTERNS` (Trainer checkpoints, optimizer / scheduler / RNG states). Pass
            ``()`` to upload everything.
        allow_patterns: If given, only matching paths are uploaded.

    Returns:
        The URL of the created commit.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        RuntimeError: no token was passed or found.
        ValueError: ``folder/README.md`` has invalid card metadata.
    """
    from huggingface_hub import DatasetCard, HfApi, ModelCard, get_token

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"push_to_hub: {folder} is not a directory")
    if token is None and get_token() is None:
        raise RuntimeError("No Hugging Face token: pass token=..., set HF_TOKEN, or run `hf auth login`.")
    readme = folder / "README.md"
    if readme.is_file():
        # Fail before creating anything remote if the card metadata does not parse.
        import yaml

        card_cls = DatasetCard if repo_type == "dataset" else ModelCard
        try:
            card_cls(readme.read_text(encoding="utf-8"))
        except (yaml.YAMLError, ValueError) as err:
            raise ValueError(f"Invalid card metadata in {readme}: {err}") from err

    # Built per call (not at import) so HF_ENDPOINT / constants patched after import are honoured.
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    repo_id = repo_url.repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with distill-toolkit",
        # upload_folder appends its defaults to this list in place: always hand it a fresh copy.
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
        allow_patterns=list(allow_patterns) if allow_patterns else None,
    )
    logger.info("Pushed %s to %s %s: %s", folder, repo_type, repo_id, info.commit_url)
    return str(info.commit_url)
