"""Where a distilled student's training data came from: teacher, prompt template, sampling, generated dataset, cost.

:class:`Lineage` is collected from the lineage columns every data-gen job writes (:meth:`Lineage.from_generated`)
and rendered into model / dataset cards (:mod:`toolkit.publishing.cards`) and the HTML report. Secrets are redacted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from toolkit.publishing.reporting import redact_secrets as redact

__all__ = ["Lineage", "hub_commit", "is_hub_id", "lineage_rows", "strip_local_paths"]

logger = logging.getLogger(__name__)

_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` is a ``namespace/name`` Hub repo id and no path of this machine.

    Bare names (``demo_gec``, ``jfleg``) are refused: they are the toolkit's local dataset names far more often
    than legacy Hub ids, and metadata naming a repo that does not exist links nowhere.
    """
    if not name or os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return False
    return bool(_HUB_ID_RE.match(name))


def strip_local_paths(value: Any) -> Any:
    """``value`` with every absolute path of this machine cut to its last component (recursing into containers).

    Cards and pushed metadata name local data and models by name: a home or temp directory means nothing to a
    reader and tells them about the author's disk.
    """
    if isinstance(value, dict):
        return {key: strip_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_local_paths(item) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value:
        return os.path.basename(value.rstrip("/")) or value
    return value


def hub_commit(repo_id: str, *, repo_type: str = "model", revision: str | None = None) -> str | None:
    """The commit sha ``revision`` (default ``main``) of a Hub repo points at now, or ``None`` when unknown.

    Lineage pins what a student trained on: a branch name moves, the sha does not. Offline (``HF_HUB_OFFLINE``),
    for a local path or when the Hub cannot answer, the revision as given is the best record there is: ``None``
    comes back and the caller keeps ``revision``.
    """
    if not is_hub_id(repo_id):
        return None
    try:
        info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision)
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as err:
        logger.info("Could not resolve the commit of %s %s@%s: %s", repo_type, repo_id, revision or "main", err)
        return None
    return info.sha


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
        base_model_revision: Hub revision (commit sha when known) of ``base_model``.
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
    base_model_revision: str | None = None
    cost_usd: float | None = None
    num_teacher_calls: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly dict with secrets redacted, local paths cut to their names and ``None`` fields dropped."""
        data = strip_local_paths(redact(dataclasses.asdict(self)))
        return {k: v for k, v in data.items() if v not in (None, {}, [])}

    @classmethod
    def from_generated(
        cls,
        data: Any,
        *,
        generated_dataset: str | None = None,
        dataset_revision: str | None = None,
        base_model: str | None = None,
        base_model_revision: str | None = None,
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
            base_model_revision=base_model_revision,
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


def lineage_rows(lineage: Lineage) -> list[dict]:
    """``{"field", "value"}`` rows for the card's lineage table (markdown-formatted values, secrets redacted)."""
    data = lineage.to_dict()
    labels = {
        "teacher_id": "Teacher",
        "template_hash": "Prompt template hash",
        "sampling": "Sampling",
        "generated_dataset": "Generated dataset",
        "dataset_fingerprint": "Dataset fingerprint",
        "dataset_revision": "Dataset revision",
        "base_model": "Student base model",
        "base_model_revision": "Base model revision",
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
            elif key in (
                "teacher_id",
                "template_hash",
                "dataset_fingerprint",
                "dataset_revision",
                "base_model_revision",
            ):
                value = f"`{value}`"
            rows.append({"field": label, "value": value})
    for key, value in sorted(data.get("extra", {}).items()):
        rows.append({"field": key, "value": json.dumps(value) if isinstance(value, (dict, list)) else value})
    return rows
