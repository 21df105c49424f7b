"""Distilling step-by-step data: rationale sources, parse statistics, splits, training rows, contamination guard.

Rows are normalised dicts ``id, input, gold, choices, teacher_label, rationale, parse_ok`` (:func:`load_rows`), built
from the PaLM-540B release (``palm:<task>``) or any dataset ``data_gen/rationales.py`` saved.

Which rows train which run (:func:`drop_reason`): a row whose teacher output did not parse has no teacher label
and no verified rationale, so it cannot train the teacher-label task (``label_source="llm"``) or the rationale task
(``mode="task_prefix"``), but it is a valid row for the gold-label standard baseline, and the paper's code keeps it
there. ``exclude_parse_failures=True`` drops it everywhere instead (every mode on the same examples).

:func:`prepare_data` turns a run's :class:`~toolkit.methods.step_by_step.config.StepByStepConfig` into its train / validation / test rows, training examples,
teacher statistics and the test-contamination report (:mod:`toolkit.methods.step_by_step.contamination`).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Sequence
from pathlib import Path

import datasets

from toolkit.methods.step_by_step.config import LABEL_SOURCES, MODES, StepByStepConfig
from toolkit.methods.step_by_step.contamination import PALM_PREFIX, check_contamination
from toolkit.methods.step_by_step.scoring import TASKS, canonical_label, teacher_stats
from toolkit.tasks import math as math_task
from toolkit.tasks import palm
from toolkit.tasks.local import load_local

logger = logging.getLogger(__name__)

__all__ = [
    "PALM_TEACHER_ID",
    "build_train_examples",
    "carve_dev",
    "describe_splits",
    "dev_part",
    "drop_reason",
    "load_rows",
    "loading_options",
    "parse_failure_accounting",
    "prepare_data",
    "subsample",
    "svamp_teacher_equation",
]

PALM_TEACHER_ID = "palm-540b (Hsieh et al. 2023 release)"


def load_rows(
    source: str,
    split: str,
    *,
    task: str,
    data_dir: str | None = None,
    input_column: str | None = None,
    label_column: str | None = None,
    svamp_equations: bool = True,
) -> tuple[list[dict], dict]:
    """Load one split as normalised rows: ``input, gold, choices, teacher_label, rationale, parse_ok``.

    Args:
        source: ``palm:<task>`` (the paper's PaLM-540B completions via :mod:`toolkit.tasks.palm`) or the path of a
            dataset saved by ``data_gen/rationales.py`` (an Arrow dir, a ``DatasetDict`` dir, or a JSONL/CSV/Parquet
            file). Rows without teacher columns are fine for evaluation (gold only).
        split: split name (``palm:`` sources and ``DatasetDict`` dirs; ignored for single-split files).
        task: one of :data:`TASKS` — decides input formatting, label normalisation and scoring.
        data_dir: data root for ``palm:`` sources (default: ``toolkit.tasks.base.data_root()``).
        input_column / label_column: override the input text / gold label columns of a saved dataset.
        svamp_equations: SVAMP targets are equations, as in the paper (gold ``equation`` column, the teacher's
            ``The answer is (84 / 2)`` expression), instead of numbers: the student writes the arithmetic and
            the safe evaluator computes it. Scoring is by value either way.

    Returns:
        ``(rows, lineage)``; lineage holds the distinct ``teacher_id`` / ``template_hash`` / ``sampling`` values.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if source.startswith(PALM_PREFIX):
        if source[len(PALM_PREFIX) :] != task:
            raise ValueError(f"source {source!r} does not match task {task!r}")
        kwargs = {"data_dir": data_dir} if data_dir else {}
        dataset = palm.load_palm(task, split, **kwargs)
        lineage = {"teacher_id": [PALM_TEACHER_ID], "template_hash": [], "sampling": []}
    else:
        dataset = _load_saved(source, split)
        lineage = {
            key: sorted({str(v) for v in dataset[key] if v is not None}) if key in dataset.column_names else []
            for key in ("teacher_id", "template_hash", "sampling")
        }
    rows = []
    for i, row in enumerate(dataset):
        if input_column:
            text = row[input_column]
        elif "input" in row and isinstance(row["input"], str):
            text = row["input"]
        else:
            text = palm.format_input(task, row)
        gold_key = label_column or next((k for k in ("label", "answer") if k in row), None)
        if gold_key is None or gold_key not in row:
            raise ValueError(f"{source} [{split}] row {i}: no gold label column (columns: {sorted(row)})")
        choices = list(row.get("choices") or [])
        if "rationale" in row or "teacher_label" in row:
            rationale, teacher_label = row.get("rationale"), row.get("teacher_label")
            parsed = bool(row.get("parse_ok", teacher_label is not None))
        elif row.get("teacher_completion") is not None:
            rationale, teacher_label = palm.parse_completion(task, row["teacher_completion"])
            parsed = teacher_label is not None
        else:
            rationale, teacher_label, parsed = None, None, False
        teacher_label = canonical_label(task, teacher_label, choices) if parsed else None
        gold = row[gold_key]
        if task == "svamp" and svamp_equations:
            gold = row.get("equation") or gold
            if teacher_label is not None and row.get("teacher_completion"):
                teacher_label = svamp_teacher_equation(row["teacher_completion"], teacher_label)
        rows.append(
            {
                "id": str(row.get("id", row.get("uid", i))),
                "input": str(text),
                "gold": canonical_label(task, gold, choices),
                "choices": choices,
                "teacher_label": teacher_label,
                "rationale": (rationale or "").strip() or None,
                "parse_ok": parsed and teacher_label is not None,
            }
        )
    logger.info("Loaded %d rows from %s [%s]", len(rows), source, split)
    return rows, lineage


_ANSWER_EXPR = re.compile(r"answer is\s*(.+)", re.IGNORECASE)


def svamp_teacher_equation(completion: str, number_label: str) -> str:
    """The teacher's final arithmetic (``"The answer is (84 / 2)."`` -> ``"(84 / 2)"``) when it evaluates to the
    parsed numeric label; otherwise the numeric label itself (never a target the parser did not accept)."""
    head = re.split(r"\n\s*Q:", completion, maxsplit=1)[0]
    found = _ANSWER_EXPR.findall(head)
    if found:
        expr = found[-1].split("\n")[0].strip().rstrip(".").strip()
        try:
            if math_task.numbers_match(math_task.safe_eval(expr), number_label):
                return expr
        except (ValueError, ZeroDivisionError):
            pass
    return number_label


# One validation split, three names: "dev" here, "valid" in the PaLM release, "validation" on the Hub.
_DEV_ALIASES = ("dev", "valid", "validation")


def _load_saved(path: str, split: str):
    location = Path(path)
    if not location.exists():
        raise FileNotFoundError(f"rationale dataset {path!r} not found (use a saved dataset path or 'palm:<task>')")
    if _is_job_folder(location):  # a data_gen output folder: its Arrow dataset is in dataset/
        location = location / "dataset"
    if location.is_dir():
        loaded = datasets.load_from_disk(str(location))
        if isinstance(loaded, datasets.DatasetDict):
            aliases = _DEV_ALIASES if split in _DEV_ALIASES else (split,)
            found = next((name for name in aliases if name in loaded), None)
            if found is None:
                raise ValueError(f"{path} has splits {list(loaded)}, not {split!r}")
            return loaded[found]
        return loaded
    return load_local(str(location))


def _is_job_folder(folder: Path) -> bool:
    saved_dataset_files = ("dataset_dict.json", "state.json")
    return (folder / "dataset").is_dir() and not any((folder / name).exists() for name in saved_dataset_files)


def carve_dev(rows: Sequence[dict], dev_size: float | int, seed: int) -> tuple[list[dict], list[dict]]:
    """Deterministically split ``rows`` into (train, dev); ``dev_size`` is a fraction (<1) or a row count."""
    n_dev = int(round(dev_size * len(rows))) if dev_size < 1 else int(dev_size)
    if not 0 < n_dev < len(rows):
        raise ValueError(f"dev_size={dev_size} gives {n_dev} dev rows out of {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    dev = set(order[:n_dev])
    return [r for i, r in enumerate(rows) if i not in dev], [r for i, r in enumerate(rows) if i in dev]


def subsample(rows: Sequence[dict], fraction: float = 1.0, max_rows: int | None = None, seed: int = 0) -> list[dict]:
    """Seeded subset: the first ``ceil(fraction * n)`` of one fixed shuffle (nested across fractions), capped."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    keep = order[: math.ceil(fraction * len(rows))]
    if max_rows is not None:
        keep = keep[:max_rows]
    return [rows[i] for i in sorted(keep)]


# ---------------------------------------------------------------------------------------------------------------
# Training rows per mode
# ---------------------------------------------------------------------------------------------------------------
def drop_reason(row: dict, *, mode: str, label_source: str, exclude_parse_failures: bool = False) -> str | None:
    """Why ``row`` cannot train a ``(mode, label_source)`` run (``parse_failure`` / ``empty_rationale``), or None.

    A parse failure has no teacher label and an unverified rationale (no answer phrase was found), so it is dropped
    from the teacher-label task and from the rationale task; with gold labels in ``standard`` mode it is a valid row
    and kept (as in the paper's code), unless ``exclude_parse_failures`` asks for the same examples in every mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {label_source!r}")
    uses_teacher_output = exclude_parse_failures or mode == "task_prefix" or label_source == "llm"
    if uses_teacher_output and not row["parse_ok"]:
        return "parse_failure"
    if (exclude_parse_failures or mode == "task_prefix") and not row["rationale"]:
        return "empty_rationale"
    return None


def build_train_examples(
    rows: Sequence[dict], *, mode: str, label_source: str, exclude_parse_failures: bool = False
) -> tuple[list[dict], dict]:
    """Turn normalised rows into training features ``{input, label[, rationale]}``; what is dropped is counted.

    Rows are dropped per :func:`drop_reason`. Stats: ``n_rows``, ``n_used``, ``n_parse_failures`` (in ``rows``),
    ``kept_parse_failure`` (parse failures among the used rows), ``excluded_parse_failure``,
    ``excluded_empty_rationale``.
    """
    examples = []
    dropped = {"parse_failure": 0, "empty_rationale": 0}
    kept_failures = 0
    for row in rows:
        reason = drop_reason(row, mode=mode, label_source=label_source, exclude_parse_failures=exclude_parse_failures)
        if reason:
            dropped[reason] += 1
            continue
        label = row["teacher_label"] if label_source == "llm" else row["gold"]
        if label is None:
            raise ValueError(f"row {row['id']}: no {label_source} label")
        kept_failures += not row["parse_ok"]
        example = {"input": row["input"], "label": label}
        if mode == "task_prefix":
            example["rationale"] = row["rationale"]
        examples.append(example)
    if not examples:
        raise ValueError("no training examples left after excluding rows without a usable teacher output")
    stats = {
        "n_rows": len(rows),
        "n_used": len(examples),
        "n_parse_failures": sum(not r["parse_ok"] for r in rows),
        "kept_parse_failure": kept_failures,
        "excluded_parse_failure": dropped["parse_failure"],
        "excluded_empty_rationale": dropped["empty_rationale"],
    }
    logger.info("Training examples (%s, %s labels): %s", mode, label_source, stats)
    return examples, stats


def parse_failure_accounting(rows: Sequence[dict], *, exclude_parse_failures: bool = False) -> dict:
    """Of the parse-failed ``rows``, how many each ``mode/label_source`` run keeps and drops (for the tables)."""
    failed = [r for r in rows if not r["parse_ok"]]
    out = {}
    for mode in MODES:
        for source in LABEL_SOURCES:
            dropped = sum(
                drop_reason(r, mode=mode, label_source=source, exclude_parse_failures=exclude_parse_failures)
                is not None
                for r in failed
            )
            out[f"{mode}/{source}"] = {"kept": len(failed) - dropped, "dropped": dropped}
    return out


# ---------------------------------------------------------------------------------------------------------------
# A run's data
# ---------------------------------------------------------------------------------------------------------------
def loading_options(config: StepByStepConfig) -> dict:
    """The :func:`load_rows` keywords of a run: its task, data root, columns and SVAMP target format."""
    return {
        "task": config.task,
        "data_dir": config.data_dir,
        "input_column": config.input_column,
        "label_column": config.label_column,
        "svamp_equations": config.svamp_equations,
    }


def dev_part(config: StepByStepConfig) -> tuple[str, str] | None:
    """``(source, split)`` of the validation rows, or ``None`` when they are carved from the train pool."""
    if not (config.eval_source or config.eval_split):
        return None
    return config.eval_source or config.train_source, config.eval_split or "dev"


def describe_splits(config: StepByStepConfig, counts: dict[str, int]) -> dict[str, str]:
    """One line per split saying how many rows of what it holds (``metrics.json``'s ``data_splits``)."""
    train_name = f"{config.train_source} [{config.train_split}]"
    validation = dev_part(config)
    if validation is None:
        train = f"{counts['train']} of {counts['pool']} rows of {train_name} after the dev carve"
        dev = f"{counts['dev']} rows carved from {train_name} (dev_size={config.dev_size:g}, seed {config.split_seed})"
    else:
        train = f"{counts['train']} of {counts['pool']} rows of {train_name}"
        dev = f"{counts['dev']} rows of {validation[0]} [{validation[1]}]"
    test = f"{counts['test']} of {counts['test_split']} rows of {config.test_source} [{config.test_split}]"
    return {"train": train, "dev": dev, "test": test}


def prepare_data(config: StepByStepConfig) -> dict:
    """Train / validation / test rows of a run, its training examples, and what the run reports about its data.

    Validation comes from ``eval_source``/``eval_split`` (``dev_path``) when any is given, else it is carved from
    the train pool (seeded). Raises :class:`~toolkit.methods.step_by_step.contamination.ContaminationError` before
    any training when train or validation rows come from the test split (unless ``allow_test_contamination``).

    Returns:
        ``{"train_rows", "dev_rows", "test_rows", "examples", "lineage", "report"}``; ``report`` holds the
        ``metrics.json`` entries (``n_train``, ``data_splits``, ``test_contamination``, teacher statistics...).
    """
    options = loading_options(config)
    pool, lineage = load_rows(config.train_source, config.train_split, **options)
    validation = dev_part(config)
    if validation is None:
        pool, dev_rows = carve_dev(pool, config.dev_size, config.split_seed)
    else:
        dev_rows, _ = load_rows(*validation, **options)
    train_rows = subsample(pool, config.train_fraction, config.max_train_samples, config.split_seed)
    examples, exclusions = build_train_examples(
        train_rows,
        mode=config.mode,
        label_source=config.label_source,
        exclude_parse_failures=config.exclude_parse_failures,
    )
    dev_rows = subsample(dev_rows, 1.0, config.max_eval_samples, config.split_seed)
    test_split, _ = load_rows(config.test_source, config.test_split, **options)
    test_rows = subsample(test_split, 1.0, config.max_test_samples, config.split_seed)
    contamination = check_contamination(
        train=(config.train_source, config.train_split),
        dev=validation,
        test=(config.test_source, config.test_split),
        seen_inputs=[r["input"] for r in train_rows + dev_rows],
        test_inputs=[r["input"] for r in test_rows],
        allow=config.allow_test_contamination,
    )
    counts = {
        "pool": len(pool),
        "train": len(train_rows),
        "dev": len(dev_rows),
        "test": len(test_rows),
        "test_split": len(test_split),
    }
    report = {
        "n_train": len(examples),
        "n_dev": len(dev_rows),
        "n_test": len(test_rows),
        "data_splits": describe_splits(config, counts),
        "train_test_overlap": contamination["n_test_inputs_seen"],
        "test_contamination": contamination,
        "train_exclusions": exclusions,
        "parse_failures_by_mode": parse_failure_accounting(
            train_rows, exclude_parse_failures=config.exclude_parse_failures
        ),
        "teacher_train": teacher_stats(config.task, pool),
        "teacher_test": teacher_stats(config.task, test_rows),
    }
    return {
        "train_rows": train_rows,
        "dev_rows": dev_rows,
        "test_rows": test_rows,
        "examples": examples,
        "lineage": lineage,
        "report": report,
    }
