"""LMCor evaluation honesty: oracle rows bound the selectors on their metric, best single system picked on dev,
official GLEU with PTB-tokenised hypotheses through the recipe's own scoring path (issue 12, items 2-4)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from toolkit.methods.lmcor import formats as lmcor
from toolkit.methods.lmcor import scoring as lmcor_scoring
from toolkit.methods.lmcor import selectors as lmcor_selectors

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("_lmcor_recipe_args", REPO / "recipes" / "lmcor.py")
_recipe = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(_recipe)
LMCorArguments = _recipe.LMCorArguments  # the recipe holds its arguments

SELECTORS = ("first candidate", "random candidate", "MBR (chrF consensus)")


def _synthetic_pool(n: int = 40, seed: int = 0) -> list[dict]:
    """Candidates whose sentence-chrF ranking disagrees with corpus BLEU/GLEU: near-miss spellings (high chrF, no
    word match) against short exact fragments (few words, all matching)."""
    rng = random.Random(seed)
    words = "the cat sat on a mat while my dog ran to his big red house near our old school".split()
    rows = []
    for i in range(n):
        ref = " ".join(rng.sample(words, 8)) + " ."
        toks = ref.split()
        src = " ".join(t if j % 3 else t + "s" for j, t in enumerate(toks))
        near_miss = " ".join(t + "e" if len(t) > 2 else t for t in toks)  # char n-grams survive, words do not
        fragment = " ".join(toks[:4])  # 4 right words, heavy brevity penalty
        shuffled = " ".join(rng.sample(toks, len(toks)))
        rows.append(
            {
                "id": f"s{i}",
                "source": src,
                "references": [ref, " ".join(toks[::-1])],
                "candidates": [near_miss, fragment, shuffled, src],
                "systems": ["A", "B", "C", "D"],
            }
        )
    return rows


@pytest.mark.parametrize("task", ["gec", "mt", "d2t"])
def test_oracle_rows_bound_every_selector_on_their_metric(task):
    rows = _synthetic_pool()
    refs = [r["references"] for r in rows]
    sources = [r["source"] for r in rows]
    out = lmcor_selectors.baseline_outputs(rows, task=task, k=4, seed=0)
    scores = {name: lmcor_scoring.score_outputs(task, sources, hyps, refs)[0] for name, hyps in out.items()}
    oracle_rows = [n for n in out if n.startswith("oracle")]
    assert len(oracle_rows) == len(lmcor.TASK_METRICS[task])  # one per headline metric
    assert not [n for n in out if "upper bound" in n]  # nothing claims to be an exact bound
    for metric in lmcor.TASK_METRICS[task]:
        from toolkit.methods.lmcor.scoring import oracle_label

        oracle = scores[oracle_label(metric)][metric]
        for name in SELECTORS:
            assert oracle >= scores[name][metric] - 1e-9, (metric, name, oracle, scores[name][metric])
    # The old per-sentence chrF pick is NOT a bound on corpus BLEU here (what the table used to call one).
    chrf_pick = [r["candidates"][lmcor_selectors.oracle_select(r["candidates"], r["references"])] for r in rows]
    old = lmcor_scoring.score_outputs(task, sources, chrf_pick, refs)[0]["bleu"]
    assert old < max(scores[name]["bleu"] for name in SELECTORS)


def test_oracle_bounds_extra_selections_and_skips_foreign_outputs():
    rows = _synthetic_pool(12, seed=3)
    system_b = [r["candidates"][1] for r in rows]
    out = lmcor_selectors.baseline_outputs(
        rows, task="mt", k=4, extra_starts={"system B": system_b, "not a selection": ["zzz"] * len(rows)}
    )
    refs = [r["references"] for r in rows]
    b = lmcor_scoring.score_outputs("mt", ["s"] * len(rows), system_b, refs)[0]["bleu"]
    from toolkit.methods.lmcor.scoring import oracle_label

    oracle = lmcor_scoring.score_outputs("mt", ["s"] * len(rows), out[oracle_label("bleu")], refs)[0]["bleu"]
    assert oracle >= b - 1e-9
    assert all(o in r["candidates"] for o, r in zip(out[oracle_label("bleu")], rows))


def test_best_single_system_is_chosen_on_dev_not_test():
    def pool(good: str, n: int, tag: str) -> list[dict]:
        rows = []
        for i in range(n):
            ref = f"row {tag} {i} is right ."
            by = {"A": "completely wrong words here", "B": "completely wrong words here"}
            by[good] = ref
            rows.append({"id": f"{tag}{i}", "source": "x", "references": [ref], "candidates": [by["A"], by["B"]],
                         "systems": ["A", "B"]})  # fmt: skip
        return rows

    dev, test = pool("A", 5, "d"), pool("B", 5, "t")  # A is best on dev, B on test
    best, per_system_dev, outputs = lmcor_scoring.best_single_system(dev, test, task="mt", systems=["A", "B"])
    assert best == "A" and per_system_dev["A"]["bleu"] > per_system_dev["B"]["bleu"]
    assert outputs == [r["candidates"][0] for r in test]  # A's outputs on the *test* rows
    # Test references cannot change the choice.
    flipped = [{**r, "references": [r["candidates"][0]]} for r in test]
    assert lmcor_scoring.best_single_system(dev, flipped, task="mt", systems=["A", "B"])[0] == "A"
    with pytest.raises(ValueError, match="dev"):
        lmcor_scoring.best_single_system([], test, task="mt", systems=["A", "B"])


def test_ptb_tokenisation_of_every_hypothesis():
    from toolkit.methods.lmcor.scoring import prepare_hyps, ptb_tokenize

    assert ptb_tokenize("It doesn't work, does it?") == "It does n't work , does it ?"
    assert ptb_tokenize('He said "hi" to society.') == 'He said " hi " to society .'  # JFLEG keeps straight quotes
    assert ptb_tokenize("It does n't work , does it ?") == "It does n't work , does it ?"  # idempotent
    assert ptb_tokenize("I cannot wait.") == "I cannot wait ."  # JFLEG keeps "cannot" whole
    # Tokens copied from the source stay as the source has them (the official script scores sources as given).
    assert ptb_tokenize("the heat(energy) goes.", source="heat(energy) go") == "the heat(energy) goes ."
    assert prepare_hyps(["a\nb.  "], "ptb") == ["a b ."] and prepare_hyps(["a\nb.  "], None) == ["a b."]
    src, refs = ["he go to society"], [["he goes to society ."]]
    raw, _ = lmcor_scoring.score_outputs("gec", src, ["he goes to society."], refs)
    tok, sigs = lmcor_scoring.score_outputs("gec", src, ["he goes to society."], refs, tokenize="ptb")
    assert tok["gleu"] == pytest.approx(100.0) and raw["gleu"] < 100.0
    assert sigs["gleu"].endswith("|hyp:ptb")


def _jfleg_run(data_root):
    rows = lmcor.load_pool("jfleg", data_dir=str(data_root))
    assert len(rows) == 754
    args = LMCorArguments(task="jfleg", data_dir=str(data_root), k=2)
    pool = [{**r, "candidates": [r["references"][1], r["source"]]} for r in rows]
    return args, pool, [r["source"] for r in rows]


def test_recipe_scoring_path_source_copy_is_official_jfleg_gleu(data_root):
    """JFLEG dev, source copy: 38.20 GLEU (official gleu.py) through the recipe's scoring, hypotheses PTB-tokenised
    as for every row of the table; evaluate_run's source-copy row is scored by that same path."""
    from toolkit.methods.lmcor.evaluation import CORRECTOR, corrector_scores, evaluate_run

    args, pool, sources = _jfleg_run(data_root)
    assert args.eval_tokenize == "ptb"  # auto: JFLEG references are PTB-tokenised
    scores, sigs = corrector_scores(args, pool, sources)
    assert scores["gleu"] == pytest.approx(38.20, abs=0.01)
    assert "refs:sampled-500" in sigs["gleu"] and sigs["gleu"].endswith("hyp:ptb")
    part = pool[:40]
    results = evaluate_run(args, part, sources[:40], sources[:40], dev_rows=pool[40:50])
    expected = corrector_scores(args, part, sources[:40])[0]
    assert results["scores"]["source copy"] == pytest.approx(expected)
    assert results["scores"][CORRECTOR] == pytest.approx(expected)
    assert results["signatures"]["gleu"] == sigs["gleu"]


@pytest.mark.slow
def test_recipe_evaluate_run_full_jfleg_dev_source_copy(data_root):
    from toolkit.methods.lmcor.evaluation import evaluate_run

    args, pool, sources = _jfleg_run(data_root)
    results = evaluate_run(args, pool, sources, sources, dev_rows=pool[:20])
    assert results["scores"]["source copy"]["gleu"] == pytest.approx(38.20, abs=0.01)


def test_evaluate_run_best_single_system_from_dev_and_oracles_bound_it():
    from toolkit.methods.lmcor.evaluation import evaluate_run

    rows = _synthetic_pool(30, seed=5)
    dev, test = rows[:10], rows[10:]
    args = LMCorArguments(task="jsonl", task_type="mt", pool_path="unused", k=4, train_systems=["X"],
                          test_systems=["A", "B", "C", "D"])  # fmt: skip
    preds = [r["candidates"][0] for r in test]
    res = evaluate_run(args, test, preds, preds, dev_rows=dev)
    single = [n for n in res["scores"] if n.startswith("best single system")]
    assert single == [f"best single system ({res['best_single_system']}, chosen on dev)"]
    assert set(res["per_system_dev"]) == {"A", "B", "C", "D"}
    for metric, label in (("bleu", "BLEU"), ("chrf", "chrF")):
        oracle = res["scores"][f"oracle selection (corpus {label} search)"][metric]
        assert oracle >= res["scores"][single[0]][metric] - 1e-9
    assert [r["method"] for r in res["table"]][-1] == "LMCor corrector"
    no_dev = evaluate_run(args, test, preds, preds)
    assert no_dev["best_single_system"] is None and not any(n.startswith("best single") for n in no_dev["scores"])
