"""Distilling step-by-step data: rationale sources, parse statistics, splits, training rows, contamination guard.

Rows are normalised dicts ``id, input, gold, choices, teacher_label, rationale, parse_ok`` (:func:`load_rows`), built
from the PaLM-540B release (``palm:<task>``) or any dataset ``data_gen/rationales.py`` saved.

Which rows train which run (:func:`drop_reason`): a row whose teacher output did not parse has no teacher label
and no verified rationale, so it cannot train the teacher-label task (``label_source="llm"``) or the rationale task
(``mode="task_prefix"``), but it is a valid row for the gold-label standard baseline, and the paper's code keeps it
there. ``exclude_parse_failures=True`` drops it everywhere instead (every mode on the same examples).

:func:`prepare_data` turns a run's :class:`DataArguments` into its train / validation / test rows, training examples,
teacher statistics and the test-contamination report (:mod:`toolkit.methods.step_by_step.contamination`).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from toolkit.methods.step_by_step.contamination import PALM_PREFIX, check_contamination
from toolkit.methods.step_by_step.scoring import TASKS, canonical_label, teacher_stats
from toolkit.methods.step_by_step.training import LABEL_SOURCES, MODES
from toolkit.tasks import math as math_task
from toolkit.tasks import palm
from toolkit.tasks.local import load_local

logger = logging.getLogger(__name__)

__all__ = [
    "DataArguments",
    "PALM_PREFIX",
    "PALM_TEACHER_ID",
    "build_train_examples",
    "carve_dev",
    "drop_reason",
    "load_rows",
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
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"rationale dataset {path!r} not found (use a saved dataset path or 'palm:<task>')")
    if _is_job_folder(p):  # a data_gen output folder: its Arrow dataset is in dataset/
        p = p / "dataset"
    if p.is_dir():
        loaded = datasets.load_from_disk(str(p))
        if isinstance(loaded, datasets.DatasetDict):
            aliases = _DEV_ALIASES if split in _DEV_ALIASES else (split,)
            found = next((name for name in aliases if name in loaded), None)
            if found is None:
                raise ValueError(f"{path} has splits {list(loaded)}, not {split!r}")
            return loaded[found]
        return loaded
    return load_local(str(p))


def _is_job_folder(p: Path) -> bool:
    return (p / "dataset").is_dir() and not any((p / f).exists() for f in ("dataset_dict.json", "state.json"))


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
    examples, dropped, kept_failures = [], {"parse_failure": 0, "empty_rationale": 0}, 0
    for r in rows:
        reason = drop_reason(r, mode=mode, label_source=label_source, exclude_parse_failures=exclude_parse_failures)
        if reason:
            dropped[reason] += 1
            continue
        label = r["teacher_label"] if label_source == "llm" else r["gold"]
        if label is None:
            raise ValueError(f"row {r['id']}: no {label_source} label")
        kept_failures += not r["parse_ok"]
        ex = {"input": r["input"], "label": label}
        if mode == "task_prefix":
            ex["rationale"] = r["rationale"]
        examples.append(ex)
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
            kw = dict(mode=mode, label_source=source, exclude_parse_failures=exclude_parse_failures)
            dropped = sum(drop_reason(r, **kw) is not None for r in failed)
            out[f"{mode}/{source}"] = {"kept": len(failed) - dropped, "dropped": dropped}
    return out


# ---------------------------------------------------------------------------------------------------------------
# A run's data
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DataArguments:
    """Where a run's train / validation / test rows come from (the recipe's argument class extends this one)."""

    task: str = field(default="svamp", metadata={"help": "cqa | svamp | anli1 | esnli (formatting and scoring)."})
    train_source: str | None = field(
        default=None, metadata={"help": "'palm:<task>' or a saved rationale dataset path; default palm:<task>."}
    )
    train_split: str = field(default="train", metadata={"help": "Split of train_source to train on."})
    eval_source: str | None = field(
        default=None, metadata={"help": "Validation source; with eval_split unset its 'dev' split is used."}
    )
    eval_split: str | None = field(
        default=None,
        metadata={"help": "Validation split of eval_source (default train_source); unset with no eval_source/dev_path"
                  " = carve dev_size rows from train (seeded)."},
    )  # fmt: skip
    dev_path: str | None = field(
        default=None, metadata={"help": "Official validation file/dataset; overrides eval_source, no carve."}
    )
    dev_size: float = field(default=0.1, metadata={"help": "Carved validation size: fraction (<1) or row count."})
    test_source: str | None = field(default=None, metadata={"help": "Test source (default: palm:<task>)."})
    test_split: str = field(default="test", metadata={"help": "Test split (never used for selection)."})
    test_path: str | None = field(
        default=None, metadata={"help": "Official test file/dataset (gold labels); overrides test_source."}
    )
    allow_test_contamination: bool = field(
        default=False,
        metadata={"help": "Run even if train/validation rows come from the test split or share test inputs "
                  "(refused by default; recorded in metrics.json)."},
    )  # fmt: skip
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default: TOOLKIT_DATA_DIR)."})
    input_column: str | None = field(default=None, metadata={"help": "Input text column of a saved dataset."})
    label_column: str | None = field(default=None, metadata={"help": "Gold label column of a saved dataset."})
    svamp_equations: bool = field(
        default=True, metadata={"help": "SVAMP targets are equations (paper) scored by value, not bare numbers."}
    )
    train_fraction: float = field(default=1.0, metadata={"help": "Fraction of train used (data-size curve)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on train rows (after fraction)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Cap on test rows."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the dev carve and subsampling."})
    exclude_parse_failures: bool = field(
        default=False,
        metadata={"help": "Also drop teacher parse failures where they are valid rows (standard, gold labels), so "
                  "every mode trains on the same examples. They are always dropped where they have no target."},
    )  # fmt: skip

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.dev_size <= 0:
            raise ValueError("dev_size must be positive")
        self.train_source = self.train_source or f"palm:{self.task}"
        # The official-file flags win over a config's *_source (a YAML names the PaLM source by default).
        self.eval_source = self.dev_path or self.eval_source
        self.test_source = self.test_path or self.test_source or f"palm:{self.task}"


def prepare_data(a: DataArguments, *, mode: str, label_source: str) -> dict:
    """Train / validation / test rows of a run, its training examples, and what the run reports about its data.

    Validation comes from ``eval_source``/``eval_split`` (``--dev_path``) when any is given, else it is carved from
    the train pool (seeded). Raises :class:`~toolkit.methods.step_by_step.contamination.ContaminationError` before
    any training when train or validation rows come from the test split (unless ``allow_test_contamination``).

    Returns:
        ``{"train_rows", "dev_rows", "test_rows", "examples", "lineage", "report"}``; ``report`` holds the
        ``metrics.json`` entries (``n_train``, ``data_splits``, ``test_contamination``, teacher statistics...).
    """
    load = dict(task=a.task, data_dir=a.data_dir, input_column=a.input_column, label_column=a.label_column,
                svamp_equations=a.svamp_equations)  # fmt: skip
    pool, lineage = load_rows(a.train_source, a.train_split, **load)
    carved = not (a.eval_source or a.eval_split)
    dev_part = None if carved else (a.eval_source or a.train_source, a.eval_split or "dev")
    if carved:
        pool, dev_rows = carve_dev(pool, a.dev_size, a.split_seed)
    else:
        dev_rows, _ = load_rows(*dev_part, **load)
    train_rows = subsample(pool, a.train_fraction, a.max_train_samples, a.split_seed)
    examples, exclusions = build_train_examples(
        train_rows, mode=mode, label_source=label_source, exclude_parse_failures=a.exclude_parse_failures
    )
    dev_rows = subsample(dev_rows, 1.0, a.max_eval_samples, a.split_seed)
    test_rows, _ = load_rows(a.test_source, a.test_split, **load)
    n_test_split = len(test_rows)
    test_rows = subsample(test_rows, 1.0, a.max_test_samples, a.split_seed)
    contamination = check_contamination(
        train=(a.train_source, a.train_split),
        dev=dev_part,
        test=(a.test_source, a.test_split),
        seen_inputs=[r["input"] for r in train_rows + dev_rows],
        test_inputs=[r["input"] for r in test_rows],
        allow=a.allow_test_contamination,
    )
    train_name = f"{a.train_source} [{a.train_split}]"
    dev_name = f"carved from {train_name} (dev_size={a.dev_size:g}, seed {a.split_seed})" if carved else None
    splits = {
        "train": f"{len(train_rows)} of {len(pool)} rows of {train_name}" + (" after the dev carve" if carved else ""),
        "dev": f"{len(dev_rows)} rows " + (dev_name or "of {} [{}]".format(*dev_part)),
        "test": f"{len(test_rows)} of {n_test_split} rows of {a.test_source} [{a.test_split}]",
    }
    report = {
        "n_train": len(examples),
        "n_dev": len(dev_rows),
        "n_test": len(test_rows),
        "data_splits": splits,
        "train_test_overlap": contamination["n_test_inputs_seen"],
        "test_contamination": contamination,
        "train_exclusions": exclusions,
        "parse_failures_by_mode": parse_failure_accounting(
            train_rows, exclude_parse_failures=a.exclude_parse_failures
        ),
        "teacher_train": teacher_stats(a.task, pool),
        "teacher_test": teacher_stats(a.task, test_rows),
    }
    return {"train_rows": train_rows, "dev_rows": dev_rows, "test_rows": test_rows, "examples": examples,
            "lineage": lineage, "report": report}  # fmt: skip
