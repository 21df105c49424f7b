"""LMCor scoring: one hypothesis preprocessing for every table row, corpus metrics per task, per-system scores.

JFLEG's references are Penn-Treebank tokenised (``society .``, ``does n't``). A corrector trained on them learns that
style while the teacher's candidates are untokenised, so scoring raw strings would penalise every candidate-based
row against the corrector. With ``tokenize="ptb"`` every hypothesis (corrector, every baseline, every system) goes
through the same :func:`ptb_tokenize` before any metric (tokens copied from the row's source are kept as they are);
sources and references are scored as given (as the official script). :func:`score_outputs` is the one scoring path
of every row of a results table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from nltk.tokenize import TreebankWordTokenizer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from toolkit.evaluation import metrics
from toolkit.methods.lmcor.config import TASK_METRICS, TASK_TYPES
from toolkit.methods.lmcor.formats import candidate_systems, clean_text

HYP_TOKENIZERS = (None, "ptb")

__all__ = [
    "HYP_TOKENIZERS",
    "best_single_system",
    "paired_bootstrap_rows",
    "per_system_scores",
    "prepare_hyps",
    "ptb_tokenize",
    "score_outputs",
]


@lru_cache(maxsize=1)
def jfleg_treebank() -> TreebankWordTokenizer:
    """nltk's Treebank tokenizer that keeps "cannot" / "gonna" / "wanna" whole, as JFLEG does."""
    tokenizer = TreebankWordTokenizer()
    # JFLEG's references: 38 "cannot" vs 19 "can not".
    tokenizer.CONTRACTIONS2 = []
    tokenizer.CONTRACTIONS3 = []
    return tokenizer


def ptb_words(text: str) -> list[str]:
    """PTB tokens of ``text`` with straight double quotes (Treebank writes `` / '', JFLEG writes ")."""
    return ['"' if token in ("``", "''") else token for token in jfleg_treebank().tokenize(text)]


@lru_cache(maxsize=65536)
def ptb_tokenize(text: str, source: str | None = None) -> str:
    """Penn-Treebank tokenisation (nltk's ``TreebankWordTokenizer``) in JFLEG's conventions, tokens space-joined.

    ``does n't``, ``society .``, ``( x )`` as in PTB; straight double quotes and whole ``cannot`` as in JFLEG.
    Tokens that occur verbatim in ``source`` are kept as they are and the rest is tokenised run by run: JFLEG's
    sources are already in the corpus's tokenisation (the official script scores them as given), so a copied
    source token scores exactly as in the source-copy baseline (re-tokenising the few odd source tokens such as
    ``heat(energy)`` would move source-copy GLEU on JFLEG dev from 38.20 to 38.26). Idempotent.
    """
    keep = frozenset(source.split()) if source else frozenset()
    out: list[str] = []
    run: list[str] = []
    for word in [*text.split(), None]:
        if word is not None and word not in keep:
            run.append(word)
            continue
        if run:
            out += ptb_words(" ".join(run))
            run = []
        if word is not None:
            out.append(word)
    return " ".join(out)


def prepare_hyps(hyps: Sequence[str], tokenize: str | None = None, sources: Sequence[str] | None = None) -> list[str]:
    """Whitespace-normalise every hypothesis and, with ``tokenize="ptb"``, :func:`ptb_tokenize` it (row's source)."""
    if tokenize not in HYP_TOKENIZERS:
        raise ValueError(f"tokenize must be one of {HYP_TOKENIZERS}, got {tokenize!r}")
    hyps = [clean_text(h) for h in hyps]
    if tokenize != "ptb":
        return hyps
    sources = [None] * len(hyps) if sources is None else [clean_text(s) for s in sources]
    return [ptb_tokenize(hyp, source) for hyp, source in zip(hyps, sources, strict=True)]


def metric_value(result: Any) -> float:
    """A metric's number, whether it came as a ``MetricResult`` or a plain float (ROUGE)."""
    return float(getattr(result, "score", result))


def score_outputs(
    task: str,
    sources: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    tokenize: str | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Corpus metrics of ``hyps`` for the task family (GLEU: the official 500-draw ``gleu.py``).

    Args:
        task: ``gec`` / ``mt`` / ``d2t``.
        sources: one source per row (GLEU's source penalty; scored as given).
        hyps: one hypothesis per row.
        refs: per-row references (scored as given, whitespace-normalised).
        tokenize: ``"ptb"`` PTB-tokenises every hypothesis first (:func:`prepare_hyps`;
            JFLEG's references are PTB-tokenised). Use the same value for every row of a table.

    Returns:
        ``(scores, signatures)``: e.g. ``{"bleu": 23.1, "chrf": 51.0}`` and the signatures by metric (ending in
        ``|hyp:ptb`` when the hypotheses were tokenised).
    """
    if task not in TASK_TYPES:
        raise ValueError(f"task must be one of {TASK_TYPES}, got {task!r}")
    if not (len(sources) == len(hyps) == len(refs)):
        raise ValueError(f"length mismatch: {len(sources)} sources, {len(hyps)} hyps, {len(refs)} refs")
    refs = [[clean_text(r) for r in rr] for rr in refs]
    hyps = prepare_hyps(hyps, tokenize, sources)
    scores: dict[str, float] = {}
    sigs: dict[str, str] = {}
    for name in TASK_METRICS[task]:
        if name == "gleu":
            result = metrics.gleu([clean_text(s) for s in sources], hyps, refs)
        elif name == "rougeL":
            result = metrics.rouge(hyps, refs)["rougeL"]
        else:
            result = getattr(metrics, name)(hyps, refs)
        scores[name] = metric_value(result)
        if getattr(result, "signature", None):
            sigs[name] = str(result.signature) + (f"|hyp:{tokenize}" if tokenize else "")
    return scores, sigs


def system_outputs(rows: Sequence[Mapping[str, Any]], name: str) -> list[str]:
    """System ``name``'s candidate on every row (whitespace-normalised)."""
    hyps = []
    for row in rows:
        by_system = dict(zip(candidate_systems(row) or [], row["candidates"]))
        if name not in by_system:
            raise ValueError(f"row {row.get('id')}: system {name!r} has no output")
        hyps.append(clean_text(by_system[name]))
    return hyps


def best_single_system(
    dev_rows: Sequence[Mapping[str, Any]],
    test_rows: Sequence[Mapping[str, Any]],
    *,
    task: str,
    systems: Sequence[str],
    tokenize: str | None = None,
) -> tuple[str, dict[str, dict[str, float]], list[str]]:
    """Choose the system with the best headline metric on ``dev_rows``, and return its outputs on ``test_rows``.

    The choice uses the dev references only: picking it on the test rows would let the test references choose a
    row of the test table.

    Returns:
        ``(best_name, {system: dev scores}, best system's test outputs)``.
    """
    if not systems:
        raise ValueError("best_single_system needs at least one system")
    if not dev_rows:
        raise ValueError("best_single_system chooses on dev rows; got none")
    sources, refs = [r["source"] for r in dev_rows], [r["references"] for r in dev_rows]
    per_system = {
        name: score_outputs(task, sources, system_outputs(dev_rows, name), refs, tokenize=tokenize)[0]
        for name in systems
    }
    headline = TASK_METRICS[task][0]
    best = max(systems, key=lambda system: per_system[system][headline])
    return best, per_system, system_outputs(test_rows, best)


def paired_bootstrap_rows(baselines, models, refs, n_samples: int = 1000) -> list[dict]:
    """sacrebleu's paired bootstrap (BLEU and chrF) of each model against each baseline on the same segments.

    Args:
        baselines, models: ``[(name, hypotheses)]``, all aligned with ``refs`` (one list per reference stream).

    Returns:
        One row per (model, baseline): score deltas, p-values and the model's own 95% CI half-width.
    """
    rows = []
    for base_name, base_hyps in baselines:
        systems = [(base_name, base_hyps), *models]
        _, out = PairedTest(systems, {"bleu": BLEU(), "chrf": CHRF()}, refs, test_type="bs", n_samples=n_samples)()
        # sacrebleu keys them by its own names ("System", "BLEU", "chrF2"), in the order given
        scores = dict(zip(("bleu", "chrf"), [v for k, v in out.items() if k != "System"]))
        for index, (name, _) in enumerate(systems[1:], start=1):
            row = {"model": name, "vs": base_name}
            for metric in ("bleu", "chrf"):
                model, base = scores[metric][index], scores[metric][0]
                row[f"{metric} delta"] = round(float(model.score - base.score), 2)
                row[f"{metric} p"] = round(float(model.p_value), 3)
                row[f"{metric} 95% CI"] = round(float(model.ci), 2)
            rows.append(row)
    return rows


def per_system_scores(rows, systems) -> list[tuple[str, dict]]:
    """``[(system, corpus scores)]``: each MT system's own candidates on ``rows`` (``systems`` / ``candidates``)."""
    out = []
    for system in systems:
        hyps = [r["candidates"][r["systems"].index(system)] for r in rows]
        sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
        out.append((system, score_outputs("mt", sources, hyps, refs, tokenize=None)[0]))
    return out
