"""LMCor evaluation helpers: one hypothesis preprocessing for every table row, and corpus-metric oracle selection.

* **Hypothesis tokenisation** (:func:`prepare_hyps`): JFLEG's references are Penn-Treebank tokenised
  (``society .``, ``does n't``). A corrector trained on them learns that style while the teacher's candidates are
  untokenised, so scoring raw strings would penalise every candidate-based row against the corrector. With
  ``tokenize="ptb"`` every hypothesis (corrector, every baseline, every system) goes through the same
  :func:`ptb_tokenize` before any metric (tokens copied from the row's source are kept as they are); sources and
  references are scored as given (as the official script).
* **Oracle selection** (:func:`oracle_selection`): per headline metric, the per-row candidate choice that
  maximises that *corpus* metric over the whole selection. Corpus BLEU / chrF / GLEU do not decompose over
  sentences, so the exact maximum (k^N selections) is out of reach; we run a greedy coordinate ascent on the exact
  corpus score (the same statistics and formula as :mod:`toolkit.evaluation.metrics`), started from the best of the table's
  selectors and the per-sentence pick by that metric, accepting only strict improvements. The result is
  therefore >= every selector row on its own metric by construction, and a *lower* estimate of the true
  selection ceiling (exact for ROUGE-L, a mean of sentence scores).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

HYP_TOKENIZERS = (None, "ptb")
METRIC_LABELS = {"gleu": "GLEU", "bleu": "BLEU", "chrf": "chrF", "rougeL": "ROUGE-L"}

__all__ = [
    "HYP_TOKENIZERS",
    "best_single_system",
    "oracle_label",
    "oracle_selection",
    "prepare_hyps",
    "ptb_tokenize",
    "score_outputs",
]


@lru_cache(maxsize=1)
def _treebank():
    try:
        from nltk.tokenize import TreebankWordTokenizer
    except ImportError as err:  # pragma: no cover - nltk comes with rouge-score
        raise ImportError("PTB tokenisation needs nltk: pip install nltk") from err
    tok = TreebankWordTokenizer()
    # JFLEG keeps "cannot" / "gonna" / "wanna" whole (its references: 38 "cannot" vs 19 "can not").
    tok.CONTRACTIONS2, tok.CONTRACTIONS3 = [], []
    return tok


def _ptb_words(text: str) -> list[str]:
    # Treebank writes " as `` / ''; JFLEG writes straight double quotes.
    return ['"' if t in ("``", "''") else t for t in _treebank().tokenize(text)]


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
            out += _ptb_words(" ".join(run))
            run = []
        if word is not None:
            out.append(word)
    return " ".join(out)


def prepare_hyps(hyps: Sequence[str], tokenize: str | None = None, sources: Sequence[str] | None = None) -> list[str]:
    """Whitespace-normalise every hypothesis and, with ``tokenize="ptb"``, :func:`ptb_tokenize` it (row's source)."""
    from toolkit.methods.lmcor.formats import clean_text

    if tokenize not in HYP_TOKENIZERS:
        raise ValueError(f"tokenize must be one of {HYP_TOKENIZERS}, got {tokenize!r}")
    hyps = [clean_text(h) for h in hyps]
    if tokenize != "ptb":
        return hyps
    sources = [None] * len(hyps) if sources is None else [clean_text(s) for s in sources]
    return [ptb_tokenize(h, s) for h, s in zip(hyps, sources, strict=True)]


def oracle_label(metric: str) -> str:
    """Table name of the oracle row that maximises ``metric`` (``"oracle selection (corpus GLEU search)"``)."""
    return f"oracle selection (corpus {METRIC_LABELS.get(metric, metric)} search)"


@dataclass
class _CandidateStats:
    """Sufficient statistics of every candidate so that a selection's corpus score is ``score(sum of lifts)``."""

    stats: list[list[Any]]  # [row][candidate] -> numpy array (row space)
    lift: Callable[[int, Any], Any]  # row space -> corpus space (identity, or GLEU's sampled reference per draw)
    score: Callable[
        [Any], float
    ]  # summed corpus statistics -> the metric, exactly as toolkit.evaluation.metrics computes it


def _sacrebleu_stats(metric_obj, cands: list[list[str]], refs: list[list[str]]) -> _CandidateStats:
    import numpy as np

    from toolkit.evaluation.metrics import score_from_statistics, sentence_statistics

    flat_hyps = [c for row in cands for c in row]
    flat_refs = [r for row, rr in zip(cands, refs) for r in [rr] * len(row)]
    flat = iter(sentence_statistics(metric_obj, flat_hyps, flat_refs))
    stats = [[np.asarray(next(flat)) for _ in row] for row in cands]
    return _CandidateStats(stats, lambda i, a: a, lambda t: score_from_statistics(metric_obj, t.tolist()))


def _candidate_stats(metric: str, sources: list[str], cands: list[list[str]], refs: list[list[str]]):
    import numpy as np

    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        return _sacrebleu_stats(BLEU(), cands, refs)  # the settings of toolkit.evaluation.metrics.bleu
    if metric == "chrf":
        from sacrebleu.metrics import CHRF

        return _sacrebleu_stats(CHRF(), cands, refs)
    if metric == "rougeL":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # as toolkit.evaluation.metrics.rouge
        stats = [
            [np.array([scorer.score_multi(rr, c)["rougeL"].fmeasure]) for c in row] for row, rr in zip(cands, refs)
        ]
        return _CandidateStats(stats, lambda i, a: a, lambda t: float(100.0 * t[0] / len(cands)))
    if metric == "gleu":
        from toolkit.evaluation import gleu

        counts = tuple(len(r) for r in refs)
        draws = gleu.official_draws(counts, gleu.effective_iterations(counts, gleu.OFFICIAL_ITERATIONS))
        stats = [
            [np.array(gleu.reference_stats(src, c, tuple(rr))) for c in row]
            for src, row, rr in zip(sources, cands, refs)
        ]
        return _CandidateStats(
            stats, lambda i, a: a[draws[:, i]], lambda t: float(100.0 * gleu.gleu_from_totals(t).mean())
        )
    raise ValueError(f"no oracle for metric {metric!r}")


def _hill_climb(cs: _CandidateStats, start: list[int], max_passes: int) -> tuple[list[int], float]:
    """Coordinate ascent: per row, move to the candidate that strictly raises the corpus score; repeat."""
    sel = list(start)
    total = sum(cs.lift(i, cs.stats[i][c]) for i, c in enumerate(sel))
    best = cs.score(total)
    for _ in range(max_passes):
        moved = False
        for i, row in enumerate(cs.stats):
            if len(row) < 2:
                continue
            rest = total - cs.lift(i, row[sel[i]])
            for c in range(len(row)):
                if c == sel[i]:
                    continue
                trial = rest + cs.lift(i, row[c])
                value = cs.score(trial)
                if value > best + 1e-9:  # strict: no cycling on float noise
                    sel[i], total, best, moved = c, trial, value, True
        if not moved:
            break
    return sel, best


def oracle_selection(
    metric: str,
    sources: Sequence[str],
    candidates: Sequence[Sequence[str]],
    refs: Sequence[Sequence[str]],
    starts: Mapping[str, Sequence[str]],
    *,
    tokenize: str | None = None,
    max_passes: int = 10,
) -> list[str]:
    """The candidate per row that (greedily) maximises the corpus ``metric`` of the whole selection.

    Args:
        metric: ``gleu`` / ``bleu`` / ``chrf`` / ``rougeL`` (scored as :func:`score_outputs` does).
        sources: one source per row (GLEU needs them).
        candidates: the candidates each row offers (the ones the selectors chose from).
        refs: per-row references.
        starts: other selectors' outputs (``name -> one output per row``); those whose every output is one of its
            row's candidates are search starts, so the result scores >= each of them on ``metric``.
        tokenize: the hypothesis tokenisation of the table (:func:`prepare_hyps`).
        max_passes: cap on coordinate-ascent sweeps over the rows.

    Returns:
        One chosen candidate per row (as given in ``candidates``).
    """
    from toolkit.methods.lmcor.formats import clean_text

    if not (len(sources) == len(candidates) == len(refs)) or not candidates:
        raise ValueError("oracle_selection needs as many sources, candidate lists and reference lists (>= 1)")
    if any(not row for row in candidates):
        raise ValueError("every row needs at least one candidate")
    prepared = [prepare_hyps(row, tokenize, [src] * len(row)) for src, row in zip(sources, candidates)]
    clean_refs = [[clean_text(r) for r in rr] for rr in refs]
    cs = _candidate_stats(metric, [clean_text(s) for s in sources], prepared, clean_refs)
    # The per-sentence pick by the same metric (each row scored alone) is one more start.
    named = {f"sentence {metric} pick": [max(range(len(row)), key=lambda c, i=i: (cs.score(cs.lift(i, row[c])), -c))
                                          for i, row in enumerate(cs.stats)]}  # fmt: skip
    for name, outs in starts.items():
        if len(outs) == len(candidates) and all(o in row for o, row in zip(outs, candidates)):
            named[name] = [list(row).index(o) for o, row in zip(outs, candidates)]
        else:
            logger.debug("oracle %s: %r is not a selection among the candidates; not a start", metric, name)
    # Climb from the best start only: the result is still >= every start, at a fraction of the cost.
    start_scores = {
        name: cs.score(sum(cs.lift(i, cs.stats[i][c]) for i, c in enumerate(sel))) for name, sel in named.items()
    }
    name = max(start_scores, key=start_scores.get)
    sel, value = _hill_climb(cs, named[name], max_passes)
    logger.info("oracle %s: %.2f (climbed from %r at %.2f)", metric, value, name, start_scores[name])
    return [candidates[i][c] for i, c in enumerate(sel)]


# --------------------------------------------------------------------------------------------------------------
# Scoring (re-exported by toolkit.methods.lmcor.formats)
# --------------------------------------------------------------------------------------------------------------
def _value(result: Any) -> float:
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
        tokenize: ``"ptb"`` PTB-tokenises every hypothesis first (:func:`toolkit.methods.lmcor.scoring.prepare_hyps`;
            JFLEG's references are PTB-tokenised). Use the same value for every row of a table.

    Returns:
        ``(scores, signatures)``: e.g. ``{"bleu": 23.1, "chrf": 51.0}`` and the signatures by metric (ending in
        ``|hyp:ptb`` when the hypotheses were tokenised).
    """
    from toolkit.evaluation import metrics
    from toolkit.methods.lmcor.formats import TASK_METRICS, TASK_TYPES, clean_text

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
        scores[name] = _value(result)
        if getattr(result, "signature", None):
            sigs[name] = str(result.signature) + (f"|hyp:{tokenize}" if tokenize else "")
    return scores, sigs


def _system_outputs(rows: Sequence[Mapping[str, Any]], name: str) -> list[str]:
    from toolkit.methods.lmcor.formats import candidate_systems, clean_text

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
    from toolkit.methods.lmcor.formats import TASK_METRICS

    if not systems:
        raise ValueError("best_single_system needs at least one system")
    if not dev_rows:
        raise ValueError("best_single_system chooses on dev rows; got none")
    sources, refs = [r["source"] for r in dev_rows], [r["references"] for r in dev_rows]
    per_system = {
        name: score_outputs(task, sources, _system_outputs(dev_rows, name), refs, tokenize=tokenize)[0]
        for name in systems
    }
    headline = TASK_METRICS[task][0]
    best = max(systems, key=lambda s: per_system[s][headline])
    return best, per_system, _system_outputs(test_rows, best)


def paired_bootstrap_rows(baselines, models, refs, n_samples: int = 1000) -> list[dict]:
    """sacrebleu's paired bootstrap (BLEU and chrF) of each model against each baseline on the same segments.

    Args:
        baselines, models: ``[(name, hypotheses)]``, all aligned with ``refs`` (one list per reference stream).

    Returns:
        One row per (model, baseline): score deltas, p-values and the model's own 95% CI half-width.
    """
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    rows = []
    for base_name, base_hyps in baselines:
        systems = [(base_name, base_hyps), *models]
        _, out = PairedTest(systems, {"bleu": BLEU(), "chrf": CHRF()}, refs, test_type="bs", n_samples=n_samples)()
        # sacrebleu keys them by its own names ("System", "BLEU", "chrF2"), in the order given
        scores = dict(zip(("bleu", "chrf"), [v for k, v in out.items() if k != "System"]))
        for i, (name, _) in enumerate(systems[1:], start=1):
            row = {"model": name, "vs": base_name}
            row |= {f"{m} delta": round(float(scores[m][i].score - scores[m][0].score), 2) for m in ("bleu", "chrf")}
            row |= {f"{m} p": round(float(scores[m][i].p_value), 3) for m in ("bleu", "chrf")}
            row |= {f"{m} 95% CI": round(float(scores[m][i].ci), 2) for m in ("bleu", "chrf")}
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
