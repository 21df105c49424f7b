"""LMCor run data: candidate pools, the train/dev/test rows, teacher candidates, the corrector's examples.

Everything here decides *which rows and which candidates* the corrector trains and is tested on, from an
:class:`~toolkit.methods.lmcor.config.LMCorConfig`. Pools are rows
``{"id", "source", "references", "group", ["candidates", "systems"]}``: a named task's data or a candidates dataset,
split group-aware and deterministically (given dev/test files replace the carved splits). Teacher candidates come
from the candidates job (:mod:`toolkit.generation.candidates`) with :func:`candidate_prompt`, the same requests as
``data_gen/candidates.py --config data_gen/configs/jfleg_smollm2.yaml``: whichever runs first fills the cache.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from toolkit.generation.candidates import CandidatesConfig, generate_candidates
from toolkit.generation.jobs import PromptConfig
from toolkit.methods.lmcor.config import NAMED_SPLITS, POOL_TASKS, WMT22_POOLS, LMCorConfig
from toolkit.methods.lmcor.formats import (
    D2T_TEMPLATE,
    GEC_TEMPLATE,
    BudgetedFormat,
    CorrectorFormat,
    build_eval_inputs,
    build_training_examples,
    candidate_systems,
    clean_text,
    pick_candidates,
)
from toolkit.methods.lmcor.reranker import closest_candidate
from toolkit.tasks.data_to_text import load_e2e
from toolkit.tasks.gec import load_jfleg
from toolkit.tasks.local import load_local
from toolkit.tasks.readers import read_jsonl
from toolkit.tasks.splits import deterministic_split
from toolkit.tasks.translation import load_wmt22
from toolkit.teachers import TeacherConfig

logger = logging.getLogger(__name__)

__all__ = [
    "budgeted_format",
    "candidate_prompt",
    "candidates_for_splits",
    "corrector_examples",
    "demo_gec_path",
    "eval_candidates",
    "filter_rows",
    "load_pool",
    "load_split_rows",
    "load_splits",
    "split_and_subsample",
    "split_pool",
    "teacher_candidates",
    "validate_pool",
]


# --------------------------------------------------------------------------------------------------------------
# Pools: loading, checking, the group-aware split
# --------------------------------------------------------------------------------------------------------------
def demo_gec_path() -> str:
    """Path of the demo GEC set shipped in the package (``toolkit/data/demo_gec.jsonl``)."""
    path = Path(__file__).resolve().parents[2] / "data" / "demo_gec.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: python toolkit/data/make_demo_gec.py")
    return str(path)


def validate_pool(rows: Sequence[Mapping[str, Any]], *, need_candidates: bool = True) -> None:
    """Check candidate-pool rows and raise a ``ValueError`` naming the first bad row."""
    if not rows:
        raise ValueError("empty candidate pool")
    for index, row in enumerate(rows):
        where = f"pool row {index} (id={row.get('id')})"
        if not isinstance(row.get("source"), str):
            raise ValueError(f"{where}: missing string 'source'")
        refs = row.get("references")
        if not refs or not all(isinstance(ref, str) and ref.strip() for ref in refs):
            raise ValueError(f"{where}: 'references' must be a non-empty list of strings")
        if not need_candidates:
            continue
        cands = row.get("candidates")
        if not cands or not all(isinstance(cand, str) for cand in cands):
            raise ValueError(f"{where}: 'candidates' must be a non-empty list of strings")
        systems = candidate_systems(row)
        if systems is not None and len(systems) != len(cands):
            raise ValueError(f"{where}: {len(systems)} systems for {len(cands)} candidates")


def load_pool(
    task: str,
    *,
    data_dir: str | None = None,
    pool_path: str | None = None,
    split: str = "dev",
    pool_revision: str | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{"id", "source", "references", "group", ["candidates", "systems"]}`` for a named task.

    Args:
        task: ``demo_gec`` (shipped demo set), ``jfleg`` (JFLEG dev), ``e2e`` (E2E dev, grouped per MR),
            ``wmt22_ende`` / ``wmt22_deen`` / ``wmt22_zhen`` / ``wmt22_csen`` (WMT22 with every system's output as
            candidates) or ``jsonl`` (``pool_path``).
        data_dir: real-data root override.
        pool_path: a candidates dataset (JSONL / Arrow dir written by ``data_gen/candidates.py``) whose
            ``candidates`` replace the task's own; for ``jsonl`` the pool itself.
        split: the loader split for ``jfleg`` / ``e2e`` (e.g. ``e2e`` ``test`` as an official test set).
        pool_revision: for a ``pool_path`` on the Hub: the revision to load (``--dataset_revision``).
    """
    if task not in POOL_TASKS:
        raise ValueError(f"unknown LMCor task {task!r}; expected one of {sorted(POOL_TASKS)}")
    if pool_path:
        ds = load_local(pool_path, revision=pool_revision)
        rows = [dict(r) for r in (ds["train"] if hasattr(ds, "keys") and "train" in ds else ds)]
        if rows and "source" not in rows[0] and "mr" in rows[0]:
            rows = [{**r, "source": r["mr"]} for r in rows]
    elif task == "demo_gec":
        rows = read_jsonl(demo_gec_path())
    elif task == "jfleg":
        rows = [dict(r) for r in load_jfleg(split, data_dir=data_dir)]
    elif task == "e2e":
        rows = [{"source": r["mr"], **dict(r)} for r in load_e2e(split, data_dir=data_dir)]
    elif task in WMT22_POOLS:
        rows = [dict(r) for r in load_wmt22(WMT22_POOLS[task], data_dir=data_dir)]
    else:
        raise ValueError("task 'jsonl' needs pool_path")
    for index, row in enumerate(rows):
        row.setdefault("id", f"{task}-{index}" if split == "dev" else f"{task}-{split}-{index}")
        row.setdefault("group", row["id"])
    validate_pool(rows, need_candidates=False)
    return rows


def split_pool(
    rows: Sequence[Mapping[str, Any]], *, dev_size: int | float, test_size: int | float, seed: int = 42
) -> dict[str, list[dict[str, Any]]]:
    """Deterministic train/dev/test split keeping rows of one ``group`` (sentence, MR) in one split."""
    # Split on ids only: nested candidate lists need not survive an Arrow round trip.
    by_id = {r["id"]: r for r in rows}
    ds = Dataset.from_dict({"id": [r["id"] for r in rows], "group": [str(r["group"]) for r in rows]})
    parts = deterministic_split(ds, dev_size=dev_size, test_size=test_size, seed=seed, group_column="group")
    return {name: [dict(by_id[i]) for i in parts[name]["id"]] for name in ("train", "dev", "test")}


# --------------------------------------------------------------------------------------------------------------
# The run's rows: filtered, split, subsampled
# --------------------------------------------------------------------------------------------------------------
def load_split_rows(spec: str, *, data_dir: str | None = None) -> list[dict]:
    """Rows of a given dev/test set (a file, or one of :data:`~toolkit.methods.lmcor.config.NAMED_SPLITS`)."""
    if spec in NAMED_SPLITS and not Path(spec).exists():
        task, split = spec.split(":")
        return load_pool(task, data_dir=data_dir, split=split)
    return load_pool("jsonl", pool_path=spec)


def split_size(value: float) -> int | float:
    """A ``dev_size`` / ``test_size``: a row count from 1 up, else a fraction."""
    return int(value) if value >= 1 else float(value)


def filter_rows(rows: list[dict], config: LMCorConfig) -> list[dict]:
    """Group rows into ``split_block`` blocks (pool order), then apply the source length caps; logs what was dropped.

    Blocks are assigned before filtering, so a block is the same run of consecutive segments whatever the length
    cap: neighbouring segments (often one document) never straddle train and test. ``max_source_words`` counts
    whitespace-separated words; ``max_source_chars`` counts characters, for scripts written without spaces.
    """
    if config.split_block:
        rows = [{**row, "group": f"block-{index // config.split_block}"} for index, row in enumerate(rows)]
    if config.max_source_words:
        kept = [row for row in rows if len(row["source"].split()) <= config.max_source_words]
        logger.info("max_source_words=%d kept %d / %d rows", config.max_source_words, len(kept), len(rows))
        rows = kept
    if config.max_source_chars:
        kept = [row for row in rows if len(row["source"].strip()) <= config.max_source_chars]
        logger.info("max_source_chars=%d kept %d / %d rows", config.max_source_chars, len(kept), len(rows))
        rows = kept
    return rows


def load_splits(config: LMCorConfig) -> dict[str, list[dict]]:
    """The run's train/dev/test rows: the config's pool, filtered (:func:`filter_rows`) and split
    (:func:`split_and_subsample`); rows carry whatever candidates the pool has."""
    pool = load_pool(
        config.task, data_dir=config.data_dir, pool_path=config.pool_path, pool_revision=config.dataset_revision
    )
    return split_and_subsample(filter_rows(pool, config), config)


def split_and_subsample(rows: list[dict], config: LMCorConfig) -> dict[str, list[dict]]:
    """Train/dev/test rows: given ``test_path`` / ``dev_path`` files, else carved from the pool; then subsamples.

    The pool is carved (group-aware, deterministic) only for the splits not given as files. Pool rows whose source
    is also in a given dev/test file are dropped from the carved splits (logged), so no test sentence is trained
    on. The ``max_*_rows`` caps then draw seeded subsamples (original order kept), of given files too.
    """
    files = {name: spec for name, spec in (("test", config.test_path), ("dev", config.dev_path)) if spec}
    given = {name: load_split_rows(spec, data_dir=config.data_dir) for name, spec in files.items()}
    held = {clean_text(row["source"]) for part in given.values() for row in part}
    if held:
        kept = [row for row in rows if clean_text(row["source"]) not in held]
        if len(kept) < len(rows):
            logger.warning("Dropped %d pool rows whose source is in the given dev/test file", len(rows) - len(kept))
        rows = kept
    dev_size = 0 if "dev" in given else split_size(config.dev_size)
    test_size = 0 if "test" in given else split_size(config.test_size)
    splits = split_pool(rows, dev_size=dev_size, test_size=test_size, seed=config.split_seed)
    splits.update(given)
    if files:
        logger.info("Official splits from files (not carved from the pool): %s", files)
    caps = {"train": config.max_train_rows, "dev": config.max_dev_rows, "test": config.max_test_rows}
    rng = random.Random(config.split_seed)
    for name, cap in caps.items():
        if cap is not None and len(splits[name]) > cap:
            keep = sorted(rng.sample(range(len(splits[name])), cap))
            splits[name] = [splits[name][index] for index in keep]
    logger.info("Split sizes: %s", {name: len(part) for name, part in splits.items()})
    return splits


# --------------------------------------------------------------------------------------------------------------
# Teacher candidates (the candidates job) for rows that have none
# --------------------------------------------------------------------------------------------------------------
def candidates_for_splits(
    splits: dict[str, list[dict]], config: LMCorConfig, teacher: TeacherConfig
) -> dict[str, list[dict]]:
    """Fill in teacher candidates for the rows that have none (demos come from the train split).

    Rows that already carry candidates (a generated pool, WMT system outputs) keep them, so a given test file
    without candidates gets the teacher's while the pool keeps its own. All splits go through one engine run, so
    ``max_cost`` bounds the whole run's spend; rows whose generation failed are dropped.
    """
    todo = {
        f"{name}/{index}": row
        for name, rows in splits.items()
        for index, row in enumerate(rows)
        if not row.get("candidates")
    }
    if not todo:
        return splits
    # Work ids carry the split: a given dev/test file may reuse the pool's ids.
    work = [{**row, "id": key} for key, row in todo.items()]
    done = {row["id"]: row for row in teacher_candidates(work, splits["train"], config, teacher)}
    out = {}
    for name, rows in splits.items():
        keys = [f"{name}/{index}" for index in range(len(rows))]
        out[name] = [
            row if key not in todo else {**done[key], "id": row["id"]}
            for key, row in zip(keys, rows)
            if key not in todo or key in done
        ]
    return out


def candidate_prompt(config: LMCorConfig) -> tuple[PromptConfig, CandidatesConfig]:
    """The candidates job's settings: chat few-shot, the task's template, first line only, 1 greedy + k-1 samples.

    Demonstrations are the first ``num_demos`` training rows (plus a spare for a row that is one of them).
    """
    template = D2T_TEMPLATE if config.task_type == "d2t" else GEC_TEMPLATE
    prompt = PromptConfig(
        **template,
        prompt_format="chat",
        num_demos=config.num_demos,
        demo_selection="fixed",
        demo_split="train",
        max_tokens=config.teacher_max_tokens,
        stop=["\n"],
        seed=config.teacher_seed,
    )
    sampling = CandidatesConfig(
        num_candidates=config.k,
        include_greedy=True,
        temperature=config.teacher_temperature,
        top_p=config.teacher_top_p,
    )
    return prompt, sampling


def teacher_candidates(
    rows: list[dict], demo_pool: list[dict], config: LMCorConfig, teacher: TeacherConfig
) -> list[dict]:
    """k candidates per row from the candidates job (rows whose generation failed are dropped, logged)."""
    prompt, sampling = candidate_prompt(config)
    out, _failures, summary = generate_candidates(
        rows, demo_pool, teacher, prompt, sampling, cache_path=config.cache_path, max_cost=config.max_cost
    )
    logger.info("Teacher candidates: %s", summary)
    if len(out) < len(rows):
        logger.warning("Dropped %d / %d rows whose teacher generation failed", len(rows) - len(out), len(rows))
    return out


# --------------------------------------------------------------------------------------------------------------
# The corrector's examples
# --------------------------------------------------------------------------------------------------------------
def budgeted_format(config: LMCorConfig, tokenizer: Any, max_source_len: int, *, is_seq2seq: bool) -> BudgetedFormat:
    """The config's corrector input format, fitted to ``max_source_len`` tokens of the student."""
    fmt = CorrectorFormat(config.separator, config.source_prefix, config.candidates_prefix)
    return BudgetedFormat(fmt, tokenizer, max_source_len, is_seq2seq=is_seq2seq)


def corrector_inputs(rows: Sequence[Mapping], config: LMCorConfig, fmt: CorrectorFormat | BudgetedFormat) -> list[str]:
    """The corrector's test inputs: the first allowed candidates in pool order, or the prefixed source alone."""
    if config.no_candidates:
        return [source_only_input(row, config) for row in rows]
    return build_eval_inputs(rows, fmt, k=config.candidates_read, systems=config.test_systems or None)


def eval_candidates(rows: Sequence[Mapping], config: LMCorConfig) -> list[list[str]]:
    """Each test row's candidates as the student reads them: the first allowed ones in pool order (uncut).

    The same choice as :func:`corrector_inputs`; the prediction records carry them (exact copy rate) and the
    learned reranker maps its outputs onto them.
    """
    return [pick_candidates(row, k=config.candidates_read, systems=config.test_systems or None) for row in rows]


def corrector_examples(
    splits: dict[str, list[dict]], config: LMCorConfig, fmt: CorrectorFormat | BudgetedFormat, *, seed: int
) -> dict[str, Any]:
    """Training and dev examples and the test inputs, all with the candidate choice the evaluation uses.

    With ``single_candidate`` every split sees the first (greedy) candidate only: order shuffling cannot swap it
    for another one, and random k-subsets are drawn only for the full-k training examples. With
    ``mode="reranker"`` the inputs are the same and each target is the example's candidate closest to its reference
    (:func:`~toolkit.methods.lmcor.reranker.closest_candidate`).

    Args:
        splits: rows with candidates.
        config: the method's settings.
        fmt: a :class:`~toolkit.methods.lmcor.formats.CorrectorFormat` or a
            :class:`~toolkit.methods.lmcor.formats.BudgetedFormat` (then how many inputs of each split it had to
            cut is logged and returned).
        seed: seeds the training subsets / orders.

    Returns:
        ``{"train": examples, "dev": examples, "test": inputs, "inputs_cut": {split: count}}``.
    """
    if config.no_candidates:
        return source_only_examples(splits, config)
    common = {"k": config.candidates_read, "systems": config.train_systems or None, "seed": seed}
    if config.mode == "reranker":
        common["target_for"] = closest_candidate
    out: dict[str, Any] = {"inputs_cut": {}}
    out["train"] = build_training_examples(
        splits["train"],
        fmt,
        shuffle=config.shuffle_candidates,
        augment=config.augment,
        multi_reference=config.multi_reference,
        subset=not config.single_candidate,
        **common,
    )
    out["inputs_cut"]["train"] = count_cut(fmt, "train")
    out["dev"] = build_training_examples(splits["dev"], fmt, subset=False, **common)
    out["inputs_cut"]["dev"] = count_cut(fmt, "dev")
    out["test"] = corrector_inputs(splits["test"], config, fmt)
    out["inputs_cut"]["test"] = count_cut(fmt, "test")
    return out


def count_cut(fmt: CorrectorFormat | BudgetedFormat, split: str) -> int:
    """How many of ``split``'s inputs the format had to cut (0 for a plain format, which never cuts)."""
    return fmt.log_cut(split) if isinstance(fmt, BudgetedFormat) else 0


def source_only_input(row: Mapping, config: LMCorConfig) -> str:
    """The no-candidates baseline's input: the corrector's source prefix and the source, no candidate."""
    return f"{config.source_prefix}{clean_text(row['source'])}"


def source_only_examples(splits: dict[str, list[dict]], config: LMCorConfig) -> dict[str, Any]:
    """The no-candidates baseline's data: ``source_prefix + source -> reference``, the corrector's rows and references.

    Same rows, same references (one example per reference with ``multi_reference``) and the same source prefix as
    the corrector, so the only difference is that no candidate is shown.
    """

    def examples(rows: list[dict]) -> list[dict[str, str]]:
        out = []
        for row in rows:
            refs = [clean_text(ref) for ref in row["references"] if ref and ref.strip()]
            for ref_index, ref in enumerate(refs if config.multi_reference else refs[:1]):
                example_id = f"{row.get('id', '')}/ref{ref_index}"
                out.append({"id": example_id, "source": source_only_input(row, config), "target": ref})
        return out

    return {
        "train": examples(splits["train"]),
        "dev": examples(splits["dev"]),
        "test": [source_only_input(row, config) for row in splits["test"]],
        "inputs_cut": {"train": 0, "dev": 0, "test": 0},
    }
