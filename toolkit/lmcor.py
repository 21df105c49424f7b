"""LMCor: a small corrector that reads an input plus k LLM candidates and rewrites them into the target.

Reference: Vernikos et al. 2023, "Small Language Models Improve Giants by Rewriting Their Outputs". The
corrector is trained on ``(input + candidates) -> reference`` and, at test time, reads candidates from any LLM
(plug-and-play). This module holds everything that is not the trainer:

* **candidate pools** — rows ``{"id", "source", "references": [...], "candidates": [...], "systems": [...]}``
  (``systems`` names who produced each candidate: a WMT system, or the teacher's ``greedy``/``sample`` kind),
* **the corrector input format** (:class:`CorrectorFormat`): the paper's
  ``source: x <extra_id_0> candidates: c1 <extra_id_0> c2 ...`` with a configurable separator; candidates are
  whitespace-normalised first (the paper's code kept trailing newlines in candidates),
* **training examples** (:func:`build_training_examples`): k candidates, optional order shuffling as
  augmentation, the single-candidate ablation, system filtering for held-out-system tests, and multi-reference
  data expanded to *one example per reference* (every reference is a valid rewrite; picking one at random would
  throw data away, and concatenating them is not a target),
* **training-free baselines** on the same rows: source copy, first (greedy) candidate, seeded random candidate,
  MBR/consensus selection (highest mean sentence-chrF to the other candidates), and one oracle row per headline
  metric (the selection that maximises that corpus metric, uses the references: not a real system; see
  :mod:`toolkit.lmcor_scoring`),
* **scoring** per task family with :mod:`toolkit.metrics` (GEC: GLEU + BLEU + chrF; MT: BLEU + chrF;
  data-to-text: BLEU + ROUGE-L), every hypothesis preprocessed the same way (PTB tokenisation for JFLEG).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolkit.lmcor_scoring import best_single_system, oracle_label, oracle_selection, score_outputs  # re-exported

logger = logging.getLogger(__name__)

TASK_TYPES = ("gec", "mt", "d2t")
# Metrics reported per task family; the first one is the headline (used to pick the best single system).
TASK_METRICS = {"gec": ("gleu", "bleu", "chrf"), "mt": ("bleu", "chrf"), "d2t": ("bleu", "rougeL")}
_WS = re.compile(r"\s+")

__all__ = [
    "TASK_METRICS",
    "TASK_TYPES",
    "CorrectorFormat",
    "baseline_outputs",
    "best_single_system",
    "build_eval_inputs",
    "build_training_examples",
    "clean_text",
    "mbr_select",
    "oracle_select",
    "pick_candidates",
    "score_outputs",
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
        systems = row.get("systems")
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
        names = row.get("systems") or []
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
# Training-free selectors
# --------------------------------------------------------------------------------------------------------------
def _sentence_chrf(hyp: str, ref: str) -> float:
    from toolkit.metrics import sentence_chrf

    value = sentence_chrf(hyp, ref)
    return float(getattr(value, "score", value))


def mbr_select(candidates: Sequence[str], utility: Callable[[str, str], float] | None = None) -> int:
    """Index of the consensus candidate: the highest mean utility (sentence chrF) against the other candidates.

    This is minimum-Bayes-risk decoding with the candidates as pseudo-references. Ties go to the earliest
    candidate (the greedy one in teacher pools). With one or two candidates it returns 0 (no consensus signal).
    """
    if not candidates:
        raise ValueError("mbr_select needs at least one candidate")
    if len(candidates) <= 2:
        return 0
    utility = utility or _sentence_chrf
    best, best_score = 0, float("-inf")
    for i, hyp in enumerate(candidates):
        score = sum(utility(hyp, other) for j, other in enumerate(candidates) if j != i) / (len(candidates) - 1)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


def oracle_select(
    candidates: Sequence[str], references: Sequence[str], utility: Callable[[str, str], float] | None = None
) -> int:
    """Index of the best candidate by a sentence score (default sentence chrF, max over references).

    A per-sentence pick, not a bound on corpus metrics (corpus BLEU / GLEU / chrF do not decompose over sentences);
    the table's oracle rows come from :func:`toolkit.lmcor_scoring.oracle_selection`.
    """
    if not candidates or not references:
        raise ValueError("oracle_select needs candidates and references")
    utility = utility or _sentence_chrf
    scores = [max(utility(c, r) for r in references) for c in candidates]
    return max(range(len(candidates)), key=lambda i: (scores[i], -i))


def baseline_outputs(
    rows: Sequence[Mapping[str, Any]],
    *,
    task: str,
    k: int,
    systems: Sequence[str] | None = None,
    seed: int = 0,
    utility: Callable[[str, str], float] | None = None,
    tokenize: str | None = None,
    extra_starts: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Outputs of every training-free baseline on ``rows``, computed from the same k candidates the corrector sees.

    One oracle row per metric of the task (:func:`toolkit.lmcor_scoring.oracle_selection`, scored with the same
    ``tokenize`` as the table): each is >= every selector here on its own metric, and >= each ``extra_starts``
    output (e.g. the best single system) that is a selection among the same candidates.

    Returns:
        ``{"source copy" (GEC only), "first candidate", "random candidate", "MBR (chrF consensus)",
        oracle_label(metric) for each metric of the task}`` → one output per row.
    """
    if task not in TASK_TYPES:
        raise ValueError(f"task must be one of {TASK_TYPES}, got {task!r}")
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    if task == "gec":
        out["source copy"] = [clean_text(r["source"]) for r in rows]
    first, rand, mbr, pools = [], [], [], []
    for row in rows:
        cands = pick_candidates(row, k=k, systems=systems)
        if not cands:
            raise ValueError(f"row {row.get('id')}: no candidate from systems {systems}")
        first.append(cands[0])
        rand.append(cands[rng.randrange(len(cands))])
        mbr.append(cands[mbr_select(cands, utility)])
        pools.append(cands)
    out["first candidate"] = first
    out["random candidate"] = rand
    out["MBR (chrF consensus)"] = mbr
    starts = {"first candidate": first, "random candidate": rand, "MBR (chrF consensus)": mbr, **(extra_starts or {})}
    sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
    for metric in TASK_METRICS[task]:
        out[oracle_label(metric)] = oracle_selection(metric, sources, pools, refs, starts, tokenize=tokenize)
    return out


# --------------------------------------------------------------------------------------------------------------
# Pools: loading, splitting, teacher candidates
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
    from pathlib import Path

    path = Path(__file__).with_name("data") / "demo_gec.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; rebuild it with: python toolkit/data/make_demo_gec.py")
    return str(path)


def load_pool(
    task: str, *, data_dir: str | None = None, pool_path: str | None = None, split: str = "dev"
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
    """
    if task not in POOL_TASKS:
        raise ValueError(f"unknown LMCor task {task!r}; expected one of {sorted(POOL_TASKS)}")
    if pool_path:
        from toolkit.tasks.base import load_local

        ds = load_local(pool_path)
        rows = [dict(r) for r in (ds["train"] if hasattr(ds, "keys") and "train" in ds else ds)]
        if rows and "source" not in rows[0] and "mr" in rows[0]:
            rows = [{**r, "source": r["mr"]} for r in rows]
        if rows and "systems" not in rows[0] and "candidate_kinds" in rows[0]:
            rows = [{**r, "systems": r["candidate_kinds"]} for r in rows]
    elif task == "demo_gec":
        from toolkit.tasks.base import read_jsonl

        rows = read_jsonl(demo_gec_path())
    elif task == "jfleg":
        from toolkit.tasks.gec import load_jfleg

        rows = [dict(r) for r in load_jfleg(split, data_dir=data_dir)]
    elif task == "e2e":
        from toolkit.tasks.data_to_text import load_e2e

        rows = [{"source": r["mr"], **dict(r)} for r in load_e2e(split, data_dir=data_dir)]
    elif task in WMT22_POOLS:
        from toolkit.tasks.translation import load_wmt22

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
    from datasets import Dataset

    from toolkit.tasks.base import deterministic_split

    # Split on ids only: nested candidate lists need not survive an Arrow round trip.
    by_id = {r["id"]: r for r in rows}
    ds = Dataset.from_dict({"id": [r["id"] for r in rows], "group": [str(r["group"]) for r in rows]})
    parts = deterministic_split(ds, dev_size=dev_size, test_size=test_size, seed=seed, group_column="group")
    return {name: [dict(by_id[i]) for i in parts[name]["id"]] for name in ("train", "dev", "test")}


def _same_row(demo: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    same_id = demo.get("id") is not None and demo.get("id") == row.get("id")
    return same_id or clean_text(demo["source"]) == clean_text(row["source"])


def generate_candidates(
    rows: Sequence[Mapping[str, Any]],
    teacher_config: Any,
    *,
    task: str,
    demos: Sequence[Mapping[str, Any]],
    num_demos: int | None = None,
    k: int = 5,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_tokens: int = 64,
    seed: int = 0,
    cache_path: str | None = None,
    max_cost: float | None = None,
) -> list[dict[str, Any]]:
    """Ask a teacher for k candidates per row (1 greedy + k-1 samples, as in the paper's code) through the engine.

    Every call goes through :class:`toolkit.cache.GenerationCache`, so a re-run makes no teacher call. Rows whose
    generation failed are dropped (logged). Output rows gain ``candidates``, ``systems`` (= candidate kinds
    ``greedy``/``sample``) and the lineage columns ``teacher_id``, ``template_hash``, ``sampling``, ``usage``
    (tokens, ``cost_usd`` and ``num_calls``: the requests behind the row).

    A row is never its own demonstration (same ``id`` or same source): pass ``num_demos + 1`` demos and
    ``num_demos``, so such a row gets the spare one (as ``data_gen``'s ``demos_for``); the template hash names the
    first ``num_demos``, which every other row sees.
    """
    import json

    from toolkit.cache import GenerationCache
    from toolkit.generation import WorkItem, run_generation
    from toolkit.prompts import FewShotTemplate, template_hash
    from toolkit.teachers import GenerationRequest, load_teacher

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    template = FewShotTemplate(prompt_format="chat", **(D2T_TEMPLATE if task == "d2t" else GEC_TEMPLATE))
    demos = [{**d, "target": d.get("target") or clean_text(d["references"][0])} for d in demos]
    num_demos = len(demos) if num_demos is None else num_demos
    thash = template_hash(template, demos[:num_demos])
    sampling = {"k": k, "greedy": 1, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
    items = []
    for row in rows:
        own = [d for d in demos if not _same_row(d, row)][:num_demos]  # its own reference would leak
        prompt = template.build(own, row)
        reqs = [GenerationRequest(**prompt, n=1, temperature=0.0, max_tokens=max_tokens, stop=["\n"])]
        if k > 1:
            reqs.append(
                GenerationRequest(
                    **prompt,
                    n=k - 1,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    stop=["\n"],
                    seed=seed,
                )
            )
        items.append(WorkItem(str(row["id"]), reqs))
    teacher = load_teacher(teacher_config)
    try:
        with GenerationCache(cache_path) as cache:
            outcomes, summary = run_generation(items, teacher, cache, max_cost=max_cost, desc="teacher candidates")
    finally:
        teacher.close()
    logger.info("Teacher candidates: %s", summary.to_dict())
    out, failed = [], 0
    for row, outcome, item in zip(rows, outcomes, items):
        if not outcome.ok:
            failed += 1
            continue
        gens = [g for per_req in outcome.generations for g in per_req]
        cands = [template.clean_output(g.text, first_line=True) for g in gens]
        usage, cost, n_calls = outcome.usage.to_dict(), teacher.cost(outcome.usage), len(item.requests)
        out.append(
            {
                **row,
                "candidates": cands,
                "systems": ["greedy"] + ["sample"] * (len(cands) - 1),
                "teacher_id": teacher.id,
                "template_hash": thash,
                "sampling": json.dumps(sampling, sort_keys=True),
                "usage": json.dumps({**usage, "cost_usd": round(cost, 8), "num_calls": n_calls}, sort_keys=True),
            }
        )
    if failed:
        logger.warning("Dropped %d / %d rows whose teacher generation failed", failed, len(rows))
    return out
