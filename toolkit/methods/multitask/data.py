"""Data for the multi-task recipe: one ``source:task`` mixture entry → train / dev / test rows and a label set.

Which rows a model is scored on is part of its result, so the rule is fixed and recorded (``TaskSplits.origin``):

1. ``--test_path`` / ``--dev_path`` (a JSONL / CSV / TSV / Parquet file with the loader's columns) win;
2. else the source's **official** split: SNIPS ``train`` / ``valid`` / ``test``, 20NG ``train`` / ``test``, a folder
   source's ``train.jsonl`` / ``dev.jsonl`` (or ``valid.jsonl``) / ``test.jsonl``;
3. only when neither exists is a split **carved** from the training pool, deterministically (seeded): SLURP ships
   ``devel`` only, 20NG has no dev.

Every row has an ``id`` naming its source item (the loader's, e.g. SNIPS ``snips-test-12`` or SLURP's
``slurp_id``, else ``<source>-<split>-<line>`` in the file's order, e.g. ``20ng-test-12``), so prediction rows of
any model can be matched by test item.

The label set of a task (topic names, intents) comes from the **training split only**: a ``ClassLabel``'s declared
names, else the labels train shows. Test labels never leak into the answer inventory; a test label that train never
shows is scored as an error (see :mod:`toolkit.evaluation.label_scoring`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.tasks import REGISTRY, load
from toolkit.tasks.local import load_local
from toolkit.tasks.splits import deterministic_split

logger = logging.getLogger(__name__)

DEV_SPLIT_NAMES = ("dev", "valid", "validation")
TASK_TYPES = ("topic", "intent", "slots", "intent_slots")

__all__ = [
    "DEV_SPLIT_NAMES",
    "TASK_TYPES",
    "TaskSplits",
    "load_mixture_splits",
    "load_task_splits",
    "parse_task_spec",
    "truncate_texts",
]


@dataclass
class TaskSplits:
    """One ``source:task`` entry of a mixture: subsampled train/test (and dev) rows plus the train label set.

    ``origin`` says where each split came from, e.g. ``{"train": "snips:train", "test": "snips:test (official)"}``.
    """

    name: str
    source: str
    task: str
    train: Any
    test: Any
    labels: list[str] | None = None
    spec: str = ""
    dev: Any = None
    origin: dict[str, str] = field(default_factory=dict)


def parse_task_spec(spec: str) -> tuple[str, str]:
    """``"snips:intent_slots"`` → ``("snips", "intent_slots")`` (the source may be a path containing ':')."""
    source, sep, task = spec.rpartition(":")
    if not sep or not source:
        raise ValueError(f"task spec {spec!r} must look like '<source>:<task>', e.g. 'snips:intent_slots'")
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}; expected one of {TASK_TYPES}")
    return source, task


def _available_splits(source: str) -> tuple[str, ...]:
    folder = Path(source).expanduser()
    if folder.is_dir():
        return tuple(s for s in ("train", *DEV_SPLIT_NAMES, "test") if (folder / f"{s}.jsonl").is_file())
    return REGISTRY[source].splits if source in REGISTRY else ("train", "test")


def _load_split(source: str, split: str, data_dir: str | None):
    folder = Path(source).expanduser()
    if folder.is_dir():  # a folder of {train,dev,test}.jsonl with the same columns as the loaders
        return _with_ids(load_local(str(folder / f"{split}.jsonl")), f"{_short_name(source)}-{split}")
    return _with_ids(load(source, split=split, data_dir=data_dir), f"{_short_name(source)}-{split}")


def _load_file(path: str):
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"split file {path!r} does not exist")
    return _with_ids(load_local(path), Path(path).name)


def _with_ids(ds, prefix: str):
    """``ds`` with an ``id`` column: its own, else ``<prefix>-<row index>`` (taken before any carving or subsample)."""
    if "id" in ds.column_names:
        return ds
    return ds.add_column("id", [f"{prefix}-{i}" for i in range(len(ds))])


def _with_label_names(ds, names: list[str] | None):
    """Topic ``label`` column as strings: a split's own ``ClassLabel`` names, else train's names for plain ints."""
    if ds is None:
        return None
    values = ds["label"]
    if all(isinstance(v, str) for v in values):
        return ds
    own = getattr(ds.features["label"], "names", None) or names
    if own is None:
        return ds
    names_col = [own[v] if isinstance(v, int) else v for v in values]
    return ds.remove_columns("label").add_column("label", names_col)


def _train_labels(task: str, train) -> list[str] | None:
    if task == "topic":
        feature = train.features["label"]
        return list(feature.names) if hasattr(feature, "names") else sorted(set(train["label"]))
    if task in ("intent", "intent_slots"):
        return sorted(set(train["intent"]))
    return None


def load_task_splits(
    spec: str,
    *,
    train_size: int = -1,
    test_size: int = -1,
    seed: int = 42,
    data_dir: str | None = None,
    test_path: str | None = None,
    dev_path: str | None = None,
    need_dev: bool = False,
) -> TaskSplits:
    """Load, split and subsample one ``source:task`` mixture entry (see the module docstring for the split rule).

    Args:
        spec: ``<source>:<task>``; ``source`` is a ``toolkit.tasks`` registry name (``20ng``, ``snips``, ``slurp``
            ...) or a folder holding ``train.jsonl`` / ``test.jsonl`` (optionally ``dev.jsonl``).
        train_size, test_size: Subsample sizes (``-1`` = all); ``test_size`` also sizes dev and carved splits.
        seed: Seed of the carving and of the subsampling.
        data_dir: Data root for registry sources.
        test_path, dev_path: Files that replace the official / carved test and dev splits.
        need_dev: Carve a dev split from the training pool when there is no official one and no ``dev_path``
            (otherwise ``dev`` is ``None`` then).

    Returns:
        A :class:`TaskSplits`; topic labels are strings (``ClassLabel`` names).
    """
    source, task = parse_task_spec(spec)
    available = _available_splits(source)
    pool_name = "train" if "train" in available else available[0]
    train = _load_split(source, pool_name, data_dir)
    origin = {"train": f"{source}:{pool_name}"}
    test = dev = None
    if test_path:
        test = _load_file(test_path)
        origin["test"] = f"{test_path} (--test_path)"
    elif "test" in available and pool_name != "test":
        test = _load_split(source, "test", data_dir)
        origin["test"] = f"{source}:test (official)"
    official_dev = next((s for s in available if s in DEV_SPLIT_NAMES and s != pool_name), None)
    if dev_path:
        dev = _load_file(dev_path)
        origin["dev"] = f"{dev_path} (--dev_path)"
    elif official_dev:
        dev = _load_split(source, official_dev, data_dir)
        origin["dev"] = f"{source}:{official_dev} (official)"

    carve_test = test is None
    carve_dev = dev is None and need_dev
    if carve_test or carve_dev:
        n_test, n_dev = _carved_sizes(len(train), test_size, carve_test, carve_dev)
        parts = deterministic_split(train, dev_size=n_dev, test_size=n_test, seed=seed)
        carved = f"carved from {source}:{pool_name} (seed {seed})"
        if carve_test:
            test = parts["test"]
            origin["test"] = carved
        if carve_dev:
            dev = parts["dev"]
            origin["dev"] = carved
        train = parts["train"]
        origin["train"] += " minus the carved rows"

    labels = _train_labels(task, train)
    if task == "topic":
        names = labels if hasattr(train.features["label"], "names") else None
        train, test, dev = (_with_label_names(ds, names) for ds in (train, test, dev))

    name = f"{_short_name(source)}:{task}"
    logger.info("%s splits: %s", name, origin)
    return TaskSplits(
        name,
        source,
        task,
        _subsample(train, train_size, seed),
        _subsample(test, test_size, seed),
        labels,
        spec,
        dev=_subsample(dev, test_size, seed),
        origin=origin,
    )


def _carved_sizes(pool: int, test_size: int, carve_test: bool, carve_dev: bool) -> tuple[int, int]:
    """Rows to carve for test and dev from a pool of ``pool`` rows; never more than half of it (the rest trains)."""
    n_test = (test_size if test_size > 0 else max(1, pool // 5)) if carve_test else 0
    n_dev = (test_size if test_size > 0 else max(1, pool // 10)) if carve_dev else 0
    n_test = min(n_test, pool // 2)
    n_dev = min(n_dev, max(0, pool // 2 - n_test))
    return n_test, n_dev


def _subsample(ds, n: int, seed: int):
    """A seeded subsample of ``n`` rows (all of them when ``n`` is -1 or at least the size; ``None`` stays)."""
    if ds is None:
        return None
    return ds.shuffle(seed=seed).select(range(n)) if 0 < n < len(ds) else ds


def _short_name(source: str) -> str:
    """Registry names stay as is; a folder source is named by its last path component."""
    return Path(source).name if ("/" in source or "\\" in source) else source


def truncate_texts(texts: Sequence[str], tokenizer, max_tokens: int) -> list[str]:
    """Cut each text to its first ``max_tokens`` tokens of ``tokenizer`` (long 20NG posts → CPU-sized prompts).

    Done on the text, before prompt formatting, so the answer is never truncated away and the encoder baseline
    sees exactly the same words.
    """
    if max_tokens <= 0:
        return list(texts)
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]))
    return out


def _path_for_entry(paths: Sequence[str] | None, index: int) -> str | None:
    """The file given for mixture entry ``index`` (``None`` for ``-``, an empty entry or no list)."""
    if paths is None or paths[index] in ("-", ""):
        return None
    return paths[index]


def load_mixture_splits(
    specs: Sequence[str],
    tokenizer,
    *,
    train_size: int,
    test_size: int,
    seed: int,
    data_dir: str | None = None,
    test_paths: Sequence[str] | None = None,
    dev_paths: Sequence[str] | None = None,
    eval_split: str = "test",
    need_dev: bool = False,
    max_text_tokens: int = 128,
) -> tuple[list[TaskSplits], dict[str, str]]:
    """Every entry of a mixture (:func:`load_task_splits`), with the scored split in ``test`` and topic texts cut.

    ``test_paths`` / ``dev_paths`` hold one file per entry (``-`` = the default split). With ``eval_split="dev"``
    every model scores dev (``test`` points at it). Topic texts are cut to ``max_text_tokens`` of ``tokenizer`` on
    the text, so answers are never truncated away and the encoder sees the same words.

    Returns:
        ``(splits, scored)``; ``scored`` says, per entry, which rows the results table scores.
    """
    splits = []
    scored = {}
    for i, spec in enumerate(specs):
        test_path = _path_for_entry(test_paths, i)
        dev_path = _path_for_entry(dev_paths, i)
        sp = load_task_splits(
            spec,
            train_size=train_size,
            test_size=test_size,
            seed=seed,
            data_dir=data_dir,
            test_path=test_path,
            dev_path=dev_path,
            need_dev=eval_split == "dev" or need_dev,
        )
        if eval_split == "dev":  # every model scores sp.test: point it at dev
            sp.test = sp.dev
        if sp.task == "topic":
            for part in ("train", "test", "dev"):
                ds = getattr(sp, part)
                if ds is not None:
                    texts = truncate_texts(ds["text"], tokenizer, max_text_tokens)
                    setattr(sp, part, ds.remove_columns("text").add_column("text", texts))
        scored[sp.name] = f"{len(sp.test)} rows of {sp.origin[eval_split]}; train {sp.origin['train']}"
        logger.info("%s: %d train / %d %s rows", sp.name, len(sp.train), len(sp.test), eval_split)
        splits.append(sp)
    return splits, scored
