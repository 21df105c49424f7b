"""Real-data loaders, task formatting and output parsing, one module per task family.

``toolkit.tasks.load(name, split=None, data_dir=None)`` is the single entry point recipes use: a registry
name (``"jfleg"``, ``"wmt22_ende"``, ``"sst2"``, ``"palm_cqa"`` ...), a local file / ``save_to_disk``
folder, or a Hub id. ``datasets`` is imported at module top (a hard dependency); torch is never imported here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from toolkit.tasks.local import load_local

__all__ = ["REGISTRY", "TaskSpec", "load"]


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: which loader to call, its fixed kwargs, and the splits it serves.

    ``splits`` lists the valid ``split`` values; the first is not a default (``load(name)`` without a
    split returns a ``DatasetDict`` over all of them). ``split_arg=False`` marks loaders with one fixed
    split (WMT22 test sets), whose only split name is listed for the ``DatasetDict`` key.
    """

    module: str
    function: str
    splits: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    split_arg: bool = True


REGISTRY: dict[str, TaskSpec] = {
    "jfleg": TaskSpec("gec", "load_jfleg", ("dev",)),
    "jfleg_spellchecked": TaskSpec("gec", "load_jfleg", ("dev",), {"spellchecked": True}),
    "wmt22_ende": TaskSpec("translation", "load_wmt22", ("test",), {"pair": "en-de"}, split_arg=False),
    "wmt22_deen": TaskSpec("translation", "load_wmt22", ("test",), {"pair": "de-en"}, split_arg=False),
    "wmt22_zhen": TaskSpec("translation", "load_wmt22", ("test",), {"pair": "zh-en"}, split_arg=False),
    "wmt22_csen": TaskSpec("translation", "load_wmt22", ("test",), {"pair": "cs-en"}, split_arg=False),
    "e2e": TaskSpec("data_to_text", "load_e2e", ("dev", "test")),
    "sst2": TaskSpec("classification", "load_sst2", ("train", "dev", "test")),
    "ag_news": TaskSpec("classification", "load_ag_news", ("train", "test")),
    "r8": TaskSpec("classification", "load_r8", ("train", "test")),
    "20ng": TaskSpec("classification", "load_20newsgroups", ("train", "test")),
    "snips": TaskSpec("intent_slot", "load_snips", ("train", "valid", "test")),
    "slurp": TaskSpec("intent_slot", "load_slurp", ("devel",)),
    # SLURP has one split here: a deterministic, text-grouped train/dev/test split of it.
    "slurp_split": TaskSpec("intent_slot", "load_slurp", ("train", "dev", "test")),
    "esnli": TaskSpec("nli", "load_esnli", ("dev", "test")),
    "anli1": TaskSpec("nli", "load_anli1", ("valid", "test")),
    "cqa": TaskSpec("qa", "load_cqa", ("train", "test")),
    "svamp": TaskSpec("math", "load_svamp", ("train", "test")),
    # The same four tasks with the PaLM-540B rationales (teacher_completion, rationale, teacher_label).
    "palm_cqa": TaskSpec("palm", "load_palm", ("train", "test"), {"task": "cqa"}),
    "palm_svamp": TaskSpec("palm", "load_palm", ("train", "test"), {"task": "svamp"}),
    "palm_anli1": TaskSpec("palm", "load_palm", ("valid", "test"), {"task": "anli1"}),
    "palm_esnli": TaskSpec("palm", "load_palm", ("valid", "test"), {"task": "esnli"}),
}
# Common spellings people type.
_ALIASES = {
    "20newsgroups": "20ng",
    "wmt22": "wmt22_ende",
    "wmt22_en-de": "wmt22_ende",
    "wmt22_de-en": "wmt22_deen",
    "wmt22_zh-en": "wmt22_zhen",
    "wmt22_cs-en": "wmt22_csen",
    "agnews": "ag_news",
    "sst-2": "sst2",
    "anli": "anli1",
    "e-snli": "esnli",
    "commonsense_qa": "cqa",
}


def load(name: str, split: str | None = None, data_dir: str | os.PathLike | None = None, **kwargs: Any):
    """Load a task by registry name, or a local file/folder or Hub id through :func:`load_local`.

    Args:
        name: A key of :data:`REGISTRY` (or an alias such as ``"20newsgroups"``), a path, or a Hub id.
        split: One of the task's splits; ``None`` returns a ``DatasetDict`` over all of them.
        data_dir: Data root override (see :func:`toolkit.tasks.base.data_root`).
        **kwargs: Extra loader options (e.g. ``strip_headers=False`` for ``20ng``).

    Returns:
        A ``datasets.Dataset`` (or ``DatasetDict`` when ``split`` is ``None``).

    Raises:
        ValueError: Unknown split for a registered task.
    """
    key = _ALIASES.get(name, name)
    spec = REGISTRY.get(key)
    if spec is None:
        if kwargs:
            raise TypeError(f"extra options {sorted(kwargs)} only apply to registered tasks, not {name!r}")
        return load_local(Path(name) if os.path.exists(name) else name, split=split)
    loader = getattr(importlib.import_module(f"toolkit.tasks.{spec.module}"), spec.function)
    call_kwargs = {**spec.kwargs, **kwargs, "data_dir": data_dir}

    def _one(split_name: str):
        return loader(split=split_name, **call_kwargs) if spec.split_arg else loader(**call_kwargs)

    if split is None:
        return DatasetDict({s: _one(s) for s in spec.splits})
    if split not in spec.splits:
        raise ValueError(f"task {key!r} has no split {split!r} (available: {', '.join(spec.splits)})")
    return _one(split)
