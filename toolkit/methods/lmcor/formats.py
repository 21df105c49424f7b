"""LMCor: a small corrector that reads an input plus k LLM candidates and rewrites them into the target.

Reference: Vernikos et al. 2023, "Small Language Models Improve Giants by Rewriting Their Outputs". The
corrector is trained on ``(input + candidates) -> reference`` and, at test time, reads candidates from any LLM
(plug-and-play). This module holds the method:

* **candidate pools** — rows ``{"id", "source", "references": [...], "candidates": [...], "systems": [...]}``
  (``systems`` names who produced each candidate: a WMT system; rows of the candidates job name the teacher's
  ``greedy``/``sample`` kind in ``candidate_kinds`` instead, see :func:`candidate_systems`), loading and the
  group-aware split,
* **the corrector input format** (:class:`CorrectorFormat`): the paper's
  ``source: x <extra_id_0> candidates: c1 <extra_id_0> c2 ...`` with a configurable separator; candidates are
  whitespace-normalised first (the paper's code kept trailing newlines in candidates),
* **training examples** (:func:`build_training_examples`): k candidates, optional order shuffling as
  augmentation, the single-candidate ablation, system filtering for held-out-system tests, and multi-reference
  data expanded to *one example per reference* (every reference is a valid rewrite; picking one at random would
  throw data away, and concatenating them is not a target),
* **the teacher prompts** (:data:`GEC_TEMPLATE`, :data:`D2T_TEMPLATE`) the candidates job sends.

Training-free baselines live in :mod:`toolkit.methods.lmcor.selectors`, scoring in
:mod:`toolkit.methods.lmcor.scoring`, the candidates job in :mod:`toolkit.generation.candidates`.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from toolkit.tasks.base import deterministic_split, load_local, read_jsonl
from toolkit.tasks.data_to_text import load_e2e
from toolkit.tasks.gec import load_jfleg
from toolkit.tasks.translation import load_wmt22

logger = logging.getLogger(__name__)

TASK_TYPES = ("gec", "mt", "d2t")
# Metrics reported per task family; the first one is the headline (used to pick the best single system).
TASK_METRICS = {"gec": ("gleu", "bleu", "chrf"), "mt": ("bleu", "chrf"), "d2t": ("bleu", "rougeL")}
_WS = re.compile(r"\s+")

__all__ = [
    "TASK_METRICS",
    "TASK_TYPES",
    "CorrectorFormat",
    "build_eval_inputs",
    "build_training_examples",
    "candidate_systems",
    "clean_text",
    "pick_candidates",
    "validate_pool",
]


def clean_text(text: str) -> str:
    """Collapse every whitespace run (newlines, tabs) into one space and strip the ends."""
    return _WS.sub(" ", text).strip()


@dataclass
class CorrectorFormat:
    """How the corrector sees ``(source, candidates)``.

    Attributes:
        separator: placed between the source block and each candidate. The paper (T5) uses ``<extra_id_0>``,
            a sentinel the T5 vocabulary already has; for a causal LM a short plain marker such as ``" || "``
            tokenizes into fewer pieces.
        source_prefix: text before the source.
        candidates_prefix: text before the first candidate.
    """

    separator: str = " <extra_id_0> "
    source_prefix: str = "source: "
    candidates_prefix: str = "candidates: "

    def __post_init__(self):
        if not self.separator.strip():
            raise ValueError("separator must contain a visible marker (whitespace alone cannot delimit candidates)")

    def __call__(self, source: str, candidates: Sequence[str]) -> str:
        """Render one corrector input; whitespace inside the source and candidates is normalised."""
        if not candidates:
            raise ValueError("the corrector needs at least one candidate")
        sep = self.separator
        parts = [f"{self.source_prefix}{clean_text(source)}", f"{self.candidates_prefix}{clean_text(candidates[0])}"]
        parts += [clean_text(c) for c in candidates[1:]]
        return sep.join(parts)


def candidate_systems(row: Mapping[str, Any]) -> list[str] | None:
    """Who produced each candidate: ``systems`` (WMT systems) or, in the candidates job's rows, ``candidate_kinds``."""
    names = row.get("systems")
    return row.get("candidate_kinds") if names is None else names


def validate_pool(rows: Sequence[Mapping[str, Any]], *, need_candidates: bool = True) -> None:
    """Check candidate-pool rows and raise a ``ValueError`` naming the first bad row."""
    if not rows:
        raise ValueError("empty candidate pool")
    for i, row in enumerate(rows):
        if not isinstance(row.get("source"), str):
            raise ValueError(f"pool row {i}: missing string 'source'")
        refs = row.get("references")
        if not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"pool row {i} (id={row.get('id')}): 'references' must be a non-empty list of strings")
        if not need_candidates:
            continue
        cands = row.get("candidates")
        if not cands or not all(isinstance(c, str) for c in cands):
            raise ValueError(f"pool row {i} (id={row.get('id')}): 'candidates' must be a non-empty list of strings")
        systems = candidate_systems(row)
        if systems is not None and len(systems) != len(cands):
            raise ValueError(f"pool row {i}: {len(systems)} systems for {len(cands)} candidates")


def pick_candidates(
    row: Mapping[str, Any],
    *,
    k: int,
    systems: Sequence[str] | None = None,
    rng: random.Random | None = None,
    shuffle: bool = False,
) -> list[str]:
    """The k candidates the corrector sees for ``row``.

    Args:
        row: a pool row.
        k: how many candidates (fewer if the row has fewer).
        systems: keep only candidates produced by these systems (held-out-system experiments).
        rng: when given and more than k candidates are allowed, a random k-subset is drawn (augmentation);
            without it the first k are used, so the greedy candidate (first in teacher pools) is always in.
        shuffle: shuffle the order of the chosen candidates (needs ``rng``), so the corrector does not learn a
            position prior such as "the first candidate is best".

    Returns:
        Whitespace-normalised candidates, empty ones dropped.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    cands = list(row["candidates"])
    if systems is not None:
        allowed = set(systems)
        names = candidate_systems(row) or []
        if len(names) != len(cands):
            raise ValueError(f"row {row.get('id')}: filtering by system needs one system name per candidate")
        cands = [c for c, s in zip(cands, names) if s in allowed]
    cands = [clean_text(c) for c in cands]
    cands = [c for c in cands if c]
    if rng is not None and len(cands) > k:
        chosen = sorted(rng.sample(range(len(cands)), k))
        cands = [cands[i] for i in chosen]
    else:
        cands = cands[:k]
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs an rng")
        rng.shuffle(cands)
    return cands


def build_training_examples(
    rows: Iterable[Mapping[str, Any]],
    fmt: CorrectorFormat,
    *,
    k: int,
    systems: Sequence[str] | None = None,
    shuffle: bool = False,
    augment: int = 1,
    seed: int = 0,
    multi_reference: bool = True,
    subset: bool = True,
) -> list[dict[str, str]]:
    """``{"id", "source", "target"}`` examples for the corrector.

    Args:
        rows: pool rows.
        fmt: the input format.
        k: candidates per example (``k=1`` with ``subset=False`` is the single-candidate ablation: the greedy one).
        systems: only candidates from these systems (training systems in the held-out-system setup).
        shuffle: shuffle candidate order in each example (augmentation).
        augment: copies of each (row, reference) with independently drawn candidate subsets / orders.
        seed: seeds the subset / order draws.
        multi_reference: one example per reference (default); ``False`` keeps only the first reference.
        subset: draw a random k-subset when more than k candidates are available; ``False`` takes the first k.

    Returns:
        The examples; rows without any usable candidate are skipped (with a warning count).
    """
    if augment < 1:
        raise ValueError(f"augment must be >= 1, got {augment}")
    rng = random.Random(seed)
    out, skipped = [], 0
    for row in rows:
        refs = [clean_text(r) for r in row["references"] if r and r.strip()]
        if not multi_reference:
            refs = refs[:1]
        for j, ref in enumerate(refs):
            for a in range(augment):
                # The rng draws a subset only when asked: with subset=False (the single-candidate ablation) the
                # example must hold the same first-k candidates evaluation uses, shuffled or not.
                cands = pick_candidates(row, k=k, systems=systems, rng=rng if subset else None)
                if shuffle:
                    rng.shuffle(cands)
                if not cands:
                    skipped += 1
                    continue
                out.append(
                    {"id": f"{row.get('id', '')}/ref{j}/aug{a}", "source": fmt(row["source"], cands), "target": ref}
                )
    if skipped:
        logger.warning("Skipped %d examples with no candidate from the allowed systems", skipped)
    return out


def build_eval_inputs(
    rows: Iterable[Mapping[str, Any]], fmt: CorrectorFormat, *, k: int, systems: Sequence[str] | None = None
) -> list[str]:
    """Deterministic corrector inputs for evaluation (first k allowed candidates, pool order)."""
    return [fmt(row["source"], pick_candidates(row, k=k, systems=systems)) for row in rows]


# --------------------------------------------------------------------------------------------------------------
# Pools: loading, splitting; the teacher prompts of the candidates job
# --------------------------------------------------------------------------------------------------------------
WMT22_POOLS = {"wmt22_ende": "en-de", "wmt22_deen": "de-en", "wmt22_zhen": "zh-en", "wmt22_csen": "cs-en"}
POOL_TASKS = {"demo_gec": "gec", "jfleg": "gec", **dict.fromkeys(WMT22_POOLS, "mt"), "e2e": "d2t", "jsonl": None}
GEC_TEMPLATE = {
    "instruction": "Correct the grammar and spelling mistakes in the sentence. Change as little as possible.",
    "input_template": "Sentence: {source}",
    "output_template": "Corrected: {target}",
}
D2T_TEMPLATE = {
    "instruction": "Write one fluent restaurant description that mentions every attribute.",
    "input_template": "Attributes: {source}",
    "output_template": "Description: {target}",
}


def demo_gec_path() -> str:
    """Path of the demo GEC set shipped in the package (``toolkit/data/demo_gec.jsonl``)."""
    path = Path(__file__).resolve().parents[2] / "data" / "demo_gec.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: python toolkit/data/make_demo_gec.py")
    return str(path)


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
    for i, row in enumerate(rows):
        row.setdefault("id", f"{task}-{i}" if split == "dev" else f"{task}-{split}-{i}")
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
