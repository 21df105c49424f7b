"""LMCor run data: train/dev/test rows (carved from the pool, or official files), teacher candidates, examples.

Everything here decides *which rows and which candidates* the corrector trains and is tested on. ``args`` is the
recipe's ``LMCorArguments`` (``recipes/lmcor.py``). Teacher candidates come from the candidates job
(:mod:`toolkit.generation.candidates`) with :func:`candidate_prompt`, the same requests as
``data_gen/candidates.py --config data_gen/configs/jfleg_smollm2.yaml``: whichever runs first fills the cache.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from toolkit.generation.candidates import CandidatesConfig, generate_candidates
from toolkit.generation.jobs import PromptConfig
from toolkit.methods.lmcor import formats as lmcor
from toolkit.teachers import TeacherConfig

logger = logging.getLogger(__name__)

# Official splits a named loader serves, for --test_path / --dev_path "name:split" (JFLEG test is not in the data
# folder: pass its files as a local JSONL instead).
NAMED_SPLITS = ("jfleg:dev", "e2e:dev", "e2e:test")


def check_split_spec(name: str, spec: str | None) -> None:
    """Validate a ``--test_path`` / ``--dev_path`` value: an existing file/folder or one of :data:`NAMED_SPLITS`."""
    if spec and not Path(spec).exists() and spec not in NAMED_SPLITS:
        raise ValueError(f"{name}={spec!r} is neither an existing file/folder nor one of {NAMED_SPLITS}")


def check_arguments(args) -> None:
    """Validate the recipe's ``LMCorArguments``; fills ``task_type`` (from the task) and ``eval_tokenize=auto``."""
    if args.task not in lmcor.POOL_TASKS:
        raise ValueError(f"task must be one of {sorted(lmcor.POOL_TASKS)}, got {args.task!r}")
    args.task_type = args.task_type or lmcor.POOL_TASKS[args.task]
    if args.task_type not in lmcor.TASK_TYPES:
        raise ValueError(f"task_type must be one of {lmcor.TASK_TYPES} (set it for task=jsonl)")
    if args.task == "jsonl" and not args.pool_path:
        raise ValueError("task=jsonl needs --pool_path")
    if args.k < 1 or args.augment < 1 or args.num_beams < 1 or args.split_block < 0:
        raise ValueError("k, augment and num_beams must be >= 1, split_block >= 0")
    if args.no_candidates and args.single_candidate:
        raise ValueError("no_candidates and single_candidate exclude each other")
    if args.eval_tokenize == "auto":
        args.eval_tokenize = "ptb" if args.task == "jfleg" else "none"
    if args.eval_tokenize not in ("ptb", "none"):
        raise ValueError(f"eval_tokenize must be auto, ptb or none, got {args.eval_tokenize!r}")
    if set(args.train_systems) & set(args.test_systems):
        raise ValueError(f"train and test systems overlap: {set(args.train_systems) & set(args.test_systems)}")
    if bool(args.train_systems) != bool(args.test_systems):
        raise ValueError("give both train_systems and test_systems (held-out systems), or neither")
    for name in ("test_path", "dev_path"):
        check_split_spec(name, getattr(args, name))
    if args.test_path and args.test_path == args.dev_path:
        raise ValueError(f"test_path and dev_path are the same ({args.test_path}): dev would select on test")


def load_split_rows(spec: str, args) -> list[dict]:
    """Rows of a given dev/test set (see :func:`check_split_spec`), in the pool's row format."""
    if spec in NAMED_SPLITS and not Path(spec).exists():
        task, split = spec.split(":")
        return lmcor.load_pool(task, data_dir=args.data_dir, split=split)
    return lmcor.load_pool("jsonl", pool_path=spec)


def _size(x: float) -> int | float:
    return int(x) if x >= 1 else float(x)


def filter_rows(rows: list[dict], args) -> list[dict]:
    """Group rows into ``split_block`` blocks (pool order), then apply ``max_source_words``; logs what was dropped.

    Blocks are assigned before filtering, so a block is the same run of consecutive segments whatever the length
    cap: neighbouring segments (often one document) never straddle train and test.
    """
    if args.split_block:
        rows = [{**r, "group": f"block-{i // args.split_block}"} for i, r in enumerate(rows)]
    if not args.max_source_words:
        return rows
    kept = [r for r in rows if len(r["source"].split()) <= args.max_source_words]
    logger.info("max_source_words=%d kept %d / %d rows", args.max_source_words, len(kept), len(rows))
    return kept


def split_and_subsample(rows: list[dict], args) -> dict[str, list[dict]]:
    """Train/dev/test rows: given ``test_path`` / ``dev_path`` files, else carved from the pool; then subsamples.

    The pool is carved (group-aware, deterministic) only for the splits not given as files. Pool rows whose source
    is also in a given dev/test file are dropped from the carved splits (logged), so no test sentence is trained
    on. The ``max_*_rows`` caps then draw seeded subsamples (original order kept), of given files too.
    """
    files = {name: spec for name, spec in (("test", args.test_path), ("dev", args.dev_path)) if spec}
    given = {name: load_split_rows(spec, args) for name, spec in files.items()}
    held = {lmcor.clean_text(r["source"]) for part in given.values() for r in part}
    if held:
        kept = [r for r in rows if lmcor.clean_text(r["source"]) not in held]
        if len(kept) < len(rows):
            logger.warning("Dropped %d pool rows whose source is in the given dev/test file", len(rows) - len(kept))
        rows = kept
    sizes = {name: 0 if name in given else _size(getattr(args, f"{name}_size")) for name in ("dev", "test")}
    splits = lmcor.split_pool(rows, dev_size=sizes["dev"], test_size=sizes["test"], seed=args.split_seed)
    splits.update(given)
    if files:
        logger.info("Official splits from files (not carved from the pool): %s", files)
    caps = {"train": args.max_train_rows, "dev": args.max_dev_rows, "test": args.max_test_rows}
    rng = random.Random(args.split_seed)
    for name, cap in caps.items():
        if cap is not None and len(splits[name]) > cap:
            keep = sorted(rng.sample(range(len(splits[name])), cap))
            splits[name] = [splits[name][i] for i in keep]
    logger.info("Split sizes: %s", {k: len(v) for k, v in splits.items()})
    return splits


def candidates_for_splits(splits: dict[str, list[dict]], args) -> dict[str, list[dict]]:
    """Fill in teacher candidates for the rows that have none (demos come from the train split).

    Rows that already carry candidates (a generated pool, WMT system outputs) keep them, so a given test file
    without candidates gets the teacher's while the pool keeps its own. All splits go through one engine run, so
    ``max_cost`` bounds the whole run's spend; rows whose generation failed are dropped.
    """
    todo = {f"{name}/{i}": r for name, rows in splits.items() for i, r in enumerate(rows) if not r.get("candidates")}
    if not todo:
        return splits
    # Work ids carry the split: a given dev/test file may reuse the pool's ids.
    generated = teacher_candidates([{**r, "id": key} for key, r in todo.items()], splits["train"], args)
    done = {r["id"]: r for r in generated}
    out = {}
    for name, rows in splits.items():
        keys = [f"{name}/{i}" for i in range(len(rows))]
        out[name] = [
            r if key not in todo else {**done[key], "id": r["id"]}
            for key, r in zip(keys, rows)
            if key not in todo or key in done
        ]
    return out


def candidate_prompt(args) -> tuple[PromptConfig, CandidatesConfig]:
    """The candidates job's settings for the recipe's teacher: chat few-shot, the task's template, first line only.

    Demonstrations are the first ``num_demos`` training rows (plus a spare for a row that is one of them).
    """
    template = lmcor.D2T_TEMPLATE if args.task_type == "d2t" else lmcor.GEC_TEMPLATE
    prompt = PromptConfig(
        **template, prompt_format="chat", num_demos=args.num_demos, demo_selection="fixed", demo_split="train",
        max_tokens=args.teacher_max_tokens, stop=["\n"], seed=args.teacher_seed,
    )  # fmt: skip
    cand = CandidatesConfig(
        num_candidates=args.k, include_greedy=True, temperature=args.teacher_temperature, top_p=args.teacher_top_p
    )
    return prompt, cand


def teacher_config(args) -> TeacherConfig:
    return TeacherConfig(
        backend=args.teacher_backend, model=args.teacher_model, base_url=args.teacher_base_url,
        api_key=args.teacher_api_key, batch_size=args.teacher_batch_size,
    )  # fmt: skip


def teacher_candidates(rows: list[dict], demo_pool: list[dict], args, teacher: TeacherConfig | None = None):
    """k candidates per row from the candidates job (rows whose generation failed are dropped, logged)."""
    prompt, cand = candidate_prompt(args)
    out, failures, summary = generate_candidates(
        rows, demo_pool, teacher or teacher_config(args), prompt, cand, cache_path=args.cache_path,
        max_cost=args.max_cost,
    )  # fmt: skip
    logger.info("Teacher candidates: %s", summary)
    if len(out) < len(rows):
        logger.warning("Dropped %d / %d rows whose teacher generation failed", len(rows) - len(out), len(rows))
    return out


def corrector_examples(splits: dict[str, list[dict]], args, fmt, *, seed: int) -> dict[str, Any]:
    """Training and dev examples and the test inputs, all with the candidate choice the evaluation uses.

    With ``single_candidate`` every split sees the first (greedy) candidate only: order shuffling cannot swap it
    for another one, and random k-subsets are drawn only for the full-k training examples.

    Args:
        splits: rows with candidates.
        args: the script arguments.
        fmt: a :class:`~toolkit.methods.lmcor.formats.CorrectorFormat` or a
            :class:`~toolkit.methods.lmcor.truncation.BudgetedFormat`
            (then how many inputs of each split it had to cut is logged and returned).
        seed: seeds the training subsets / orders.

    Returns:
        ``{"train": examples, "dev": examples, "test": inputs, "inputs_cut": {split: count}}``.
    """
    if args.no_candidates:
        return source_only_examples(splits, args)
    k = 1 if args.single_candidate else args.k
    common = {"k": k, "systems": args.train_systems or None, "seed": seed}
    out: dict[str, Any] = {"inputs_cut": {}}

    def cut(name: str) -> None:
        out["inputs_cut"][name] = fmt.log_cut(name) if hasattr(fmt, "log_cut") else 0

    out["train"] = lmcor.build_training_examples(
        splits["train"], fmt, shuffle=args.shuffle_candidates, augment=args.augment,
        multi_reference=args.multi_reference, subset=not args.single_candidate, **common,
    )  # fmt: skip
    cut("train")
    out["dev"] = lmcor.build_training_examples(splits["dev"], fmt, subset=False, **common)
    cut("dev")
    out["test"] = lmcor.build_eval_inputs(splits["test"], fmt, k=k, systems=args.test_systems or None)
    cut("test")
    return out


def source_only_examples(splits: dict[str, list[dict]], args) -> dict[str, Any]:
    """The no-candidates baseline's data: ``source_prefix + source -> reference``, the corrector's rows and references.

    Same rows, same references (one example per reference with ``multi_reference``) and the same source prefix as
    the corrector, so the only difference is that no candidate is shown.
    """

    def inputs(rows: list[dict]) -> list[str]:
        return [f"{args.source_prefix}{lmcor.clean_text(r['source'])}" for r in rows]

    def examples(rows: list[dict]) -> list[dict[str, str]]:
        out = []
        for row, x in zip(rows, inputs(rows)):
            refs = [lmcor.clean_text(r) for r in row["references"] if r and r.strip()]
            for j, ref in enumerate(refs if args.multi_reference else refs[:1]):
                out.append({"id": f"{row.get('id', '')}/ref{j}", "source": x, "target": ref})
        return out

    return {
        "train": examples(splits["train"]),
        "dev": examples(splits["dev"]),
        "test": inputs(splits["test"]),
        "inputs_cut": {"train": 0, "dev": 0, "test": 0},
    }
