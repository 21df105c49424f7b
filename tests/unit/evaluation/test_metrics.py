"""Tests for toolkit.evaluation.metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from toolkit.evaluation import metrics

# ----------------------------------------------------------------------------------------- BLEU / chrF / TER


def test_bleu_by_hand_with_brevity_penalty():
    # hyp1 = ref1 minus "today": matches 1-4 grams = 6/6, 5/5, 4/4, 3/3; hyp len 6, ref len 7.
    # hyp2 "a big cat barked" vs "a big dog barked loudly": 1-grams a, big, barked = 3/4; 2-grams "a big" = 1/3;
    # 3-grams 0/2; 4-grams 0/1; hyp len 4, ref len 5.
    # Corpus: p1 = 9/10, p2 = 6/8, p3 = 4/6, p4 = 3/4; c = 10, r = 12 -> BP = exp(1 - 12/10).
    hyps = ["the cat sat on the mat", "a big cat barked"]
    refs = [["the cat sat on the mat today"], ["a big dog barked loudly"]]
    expected = 100 * math.exp(1 - 12 / 10) * (9 / 10 * 6 / 8 * 4 / 6 * 3 / 4) ** 0.25
    res = metrics.bleu(hyps, refs)
    assert res.name == "bleu"
    assert res.score == pytest.approx(expected, abs=1e-9)
    assert res.signature.startswith("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert res.details["bp"] == pytest.approx(math.exp(-0.2))
    assert float(res) == res.score


def test_bleu_ragged_references():
    import sacrebleu

    hyps = ["the cat sat on the mat", "a big dog barked"]
    # Row 0 has two refs (the second matches exactly), row 1 only one.
    refs = [["a totally different sentence here", "the cat sat on the mat"], ["a big dog barked"]]
    res = metrics.bleu(hyps, refs)
    assert res.score == pytest.approx(100.0)
    assert "nrefs:var" in res.signature
    # Identical to sacrebleu on None-padded streams, and different from padding with "" (a real empty ref).
    hyps2 = ["the cat sat on a mat", "dog"]
    refs2 = [["the cat sat on the mat", "a cat sat on a mat"], ["a big dog barked"]]
    padded = [["the cat sat on the mat", "a big dog barked"], ["a cat sat on a mat", None]]
    ours = metrics.bleu(hyps2, refs2).score
    assert ours == pytest.approx(sacrebleu.corpus_bleu(hyps2, padded).score)
    # Row 1 ("dog" vs a 4-word ref) carries a brevity penalty: ref_len = 6 + 4 = 10, hyp_len = 7.
    assert ours == pytest.approx(100 * math.exp(1 - 10 / 7))
    # Padding with "" instead would make the empty ref the closest length (0) and wipe that penalty out.
    empty_padded = [["the cat sat on the mat", "a big dog barked"], ["a cat sat on a mat", ""]]
    assert sacrebleu.corpus_bleu(hyps2, empty_padded).score == pytest.approx(100.0)


def test_bleu_bare_string_refs_and_errors():
    assert metrics.bleu(["a b c d"], ["a b c d"]).score == pytest.approx(100.0)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no reference"):
        metrics.bleu(["a"], [[]])
    with pytest.raises(ValueError, match="empty"):
        metrics.bleu([], [])


def test_chrf_matches_sacrebleu_sentence_chrf():
    import sacrebleu

    hyp, ref = "The dog runs home quickly.", "The dog ran home fast."
    expected = sacrebleu.sentence_chrf(hyp, [ref]).score
    assert 0 < expected < 100
    assert metrics.sentence_chrf(hyp, ref) == pytest.approx(expected)
    corpus = metrics.chrf([hyp], [[ref]])
    assert corpus.score == pytest.approx(expected)
    assert corpus.signature.startswith("chrF2|nrefs:1|")
    assert metrics.chrf([hyp], [[ref]], word_order=2).signature.startswith("chrF2++|")


def test_ter_by_hand():
    # One insertion ("the") turns the hypothesis into the 6-word reference: TER = 1/6.
    res = metrics.ter(["the cat sat on mat"], [["the cat sat on the mat"]])
    assert res.score == pytest.approx(100 / 6)
    assert res.signature.startswith("TER|nrefs:1|")


def test_sentence_bleu_effective_order():
    # 3-token hyp, 4-token ref: p1..p3 = 1, no 4-grams (effective order 3), BP = exp(1 - 4/3).
    assert metrics.sentence_bleu("a b c", "a b c d") == pytest.approx(100 * math.exp(1 - 4 / 3))
    assert metrics.sentence_bleu("a b c", ["x y", "a b c"]) == pytest.approx(100.0)


# ----------------------------------------------------------------------------------------- GLEU


def test_gleu_source_penalty_by_hand():
    # A: S = "he go to school", H = R = "he goes to school": m_n = 4, 3, 2, 1 of d_n = 4, 3, 2, 1.
    # B: S = H = "she like cats very much", R = "she likes cats very much"
    #    1-grams: H&R = 4 (she, cats, very, much); S\R = {like}, H has it once -> m1 = 4 - 1 = 3 of 5
    #    2-grams: H&R = 2 (cats very, very much); S\R = {she like, like cats} both in H -> max(2-2, 0) = 0 of 4
    #    3-grams: H&R = 1 (cats very much); S\R has 2 in H -> 0 of 3;  4-grams: 0 of 2.
    # Corpus: m = 7, 3, 2, 1; d = 9, 7, 5, 3; c = r = 9 -> GLEU = (7/9 * 3/7 * 2/5 * 1/3) ** 0.25.
    sources = ["he go to school", "she like cats very much"]
    hyps = ["he goes to school", "she like cats very much"]
    refs = [["he goes to school"], ["she likes cats very much"]]
    res = metrics.gleu(sources, hyps, refs)
    assert res.score == pytest.approx(100 * (7 / 9 * 3 / 7 * 2 / 5 * 1 / 3) ** 0.25)
    # One reference per row: the official script makes a single "draw"; both variants agree.
    assert res.signature == "GLEU|nrefs:1|n:4|tok:whitespace|refs:sampled-1|seed:j*101"
    assert metrics.gleu(sources, hyps, refs, num_iterations=None).score == pytest.approx(res.score)
    # Without the source penalty (plain n-gram precision) the same output would score higher.
    no_penalty = 100 * (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** 0.25
    assert res.score < no_penalty


def test_gleu_brevity_penalty_by_hand():
    # All hypothesis n-grams match (precisions 1); c = 4, r = 6 -> BP = exp(1 - 6/4).
    res = metrics.gleu(["a b c d e"], ["a b c d"], [["a b c d e f"]])
    assert res.score == pytest.approx(100 * math.exp(1 - 6 / 4))


def test_gleu_multi_reference_expected_statistics():
    # Against R1 (= H): stats [4, 4, 4, 4, 3, 3, 2, 2, 1, 1].
    # Against R2 "he went to school": m1 = 3 (he, to, school), m2 = 1 (to school), m3 = m4 = 0.
    # Expected stats: m = 3.5, 2, 1, 0.5 of d = 4, 3, 2, 1 -> (3.5/4 * 2/3 * 1/2 * 0.5) ** 0.25.
    src, hyp = ["he go to school"], ["he goes to school"]
    refs = [["he goes to school", "he went to school"]]
    res = metrics.gleu(src, hyp, refs, num_iterations=None)
    assert res.score == pytest.approx(100 * (3.5 / 4 * 2 / 3 * 1 / 2 * 0.5) ** 0.25)
    assert "nrefs:2" in res.signature and res.signature.endswith("refs:expected-stats")
    # Official sampling: each iteration's single-sentence corpus scores 100 (R1) or 0 (R2).
    sampled = metrics.gleu(src, hyp, refs, num_iterations=200)
    assert 0 < sampled.score < 100
    assert sampled.details["std"] > 0
    assert "refs:sampled-200" in sampled.signature
    default = metrics.gleu(src, hyp, refs)  # the official setting: 500 seeded draws
    assert default.details["iterations"] == 500 and default.score in (pytest.approx(100 * k / 500) for k in range(501))
    with pytest.raises(ValueError):
        metrics.gleu(src, hyp, refs, num_iterations=0)


def test_gleu_identical_refs_modes_agree():
    sources = ["he go to school", "she like cats very much", "the cat are black"]
    hyps = ["he goes to school", "she likes cat very much", "the cat is black"]
    refs = [[r, r] for r in ["he goes to school", "she likes cats very much", "the cat is black"]]
    exp = metrics.gleu(sources, hyps, refs, num_iterations=None).score
    samp = metrics.gleu(sources, hyps, refs, num_iterations=5).score
    assert exp == pytest.approx(samp)
    assert metrics.gleu(sources, hyps, [[r[0]] for r in refs]).score == pytest.approx(exp)


def test_gleu_length_checks():
    with pytest.raises(ValueError, match="sources and hypotheses"):
        metrics.gleu(["a"], ["a", "b"], [["a"], ["b"]])


def test_gleu_on_jfleg_expected_close_to_sampled(data_root):
    """On real JFLEG dev, the deterministic variant stays within 0.5 GLEU of the official sampling."""
    jfleg = data_root / "jfleg" / "dev"
    if not jfleg.is_dir():
        pytest.skip("jfleg not in data root")

    def lines(name):
        return (jfleg / name).read_text(encoding="utf-8").rstrip("\n").split("\n")

    sources = lines("dev.src")
    refs = list(zip(*[lines(f"dev.ref{i}") for i in range(4)]))
    assert len(sources) == len(refs) == 754
    # Hypothesis: reference 0 itself (a strong system) and the uncorrected source (the "do nothing" baseline).
    for hyps in ([r[0] for r in refs], sources):
        exp = metrics.gleu(sources, hyps, refs, num_iterations=None).score
        samp = metrics.gleu(sources, hyps, refs, num_iterations=100).score
        assert abs(exp - samp) < 0.5, (exp, samp)
    # Copying the source must score below a human reference.
    assert metrics.gleu(sources, sources, refs).score < metrics.gleu(sources, [r[0] for r in refs], refs).score


def test_gleu_default_is_official_jfleg_script(data_root):
    """With no extra argument, GLEU is the official keisks/jfleg ``gleu.py`` (``--iter 500``) on JFLEG dev."""
    from toolkit.tasks.gec import load_jfleg

    rows = load_jfleg("dev", data_dir=str(data_root))
    sources, refs = [r["source"] for r in rows], [r["references"] for r in rows]
    source_copy = metrics.gleu(sources, sources, refs)
    assert source_copy.score == pytest.approx(38.20, abs=0.01)
    assert "refs:sampled-500" in source_copy.signature
    assert metrics.gleu(sources, [r[0] for r in refs], refs).score == pytest.approx(67.28, abs=0.01)
    # The expected-statistics variant stays available (and is not the official number).
    assert abs(metrics.gleu(sources, sources, refs, num_iterations=None).score - 38.20) > 0.05


# ----------------------------------------------------------------------------------------- ROUGE


def test_rouge_by_hand_multi_ref():
    # Row 1 vs "the cat sat on the mat": unigrams 5/6 both ways (F 5/6); bigrams the cat, on the, the mat = 3/5;
    # LCS "the cat on the mat" = 5 -> F 5/6. The unrelated second ref loses the max.
    # Row 2 "hello world" vs "hello there world": unigram P 1, R 2/3 -> F 0.8; no bigram; LCS 2 -> F 0.8.
    hyps = ["the cat was on the mat", "hello world"]
    refs = [["the cat sat on the mat", "completely unrelated words"], ["hello there world"]]
    res = metrics.rouge(hyps, refs)
    assert res["rouge1"] == pytest.approx(100 * (5 / 6 + 0.8) / 2)
    assert res["rouge2"] == pytest.approx(100 * (3 / 5 + 0) / 2)
    assert res["rougeL"] == pytest.approx(100 * (5 / 6 + 0.8) / 2)


# ----------------------------------------------------------------------------------------- classification


def test_accuracy():
    assert metrics.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    with pytest.raises(ValueError):
        metrics.accuracy([1], [1, 2])


def test_macro_f1_by_hand():
    golds = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", None]
    # a: tp 1, fp 0, fn 1 -> 2/3.  b: tp 2, fp 1, fn 0 -> 4/5.  c: tp 0, fn 1 -> 0.
    assert metrics.macro_f1(preds, golds) == pytest.approx((2 / 3 + 4 / 5 + 0) / 3)
    # An out-of-label-set prediction is just wrong, exactly like None.
    assert metrics.macro_f1(["a", "b", "b", "b", "zzz"], golds) == pytest.approx((2 / 3 + 4 / 5) / 3)
    # Extra listed label with no support and no prediction contributes F1 = 0.
    assert metrics.macro_f1(preds, golds, labels=["a", "b", "c", "d"]) == pytest.approx((2 / 3 + 4 / 5) / 4)
    with pytest.raises(ValueError, match="not in `labels`"):
        metrics.macro_f1(preds, golds, labels=["a", "b"])


def test_macro_f1_matches_sklearn_when_available():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    golds = [0, 1, 2, 2, 1, 0, 3, 3, 3]
    preds = [0, 2, 2, 2, 1, 1, 3, 0, 3]
    assert metrics.macro_f1(preds, golds) == pytest.approx(sklearn_metrics.f1_score(golds, preds, average="macro"))


def test_exact_match():
    preds = ["Paris ", "london", None, "new  york"]
    golds = ["Paris", "London", "x", ["NYC", "new york"]]
    assert metrics.exact_match(preds, golds) == pytest.approx(2 / 4)
    assert metrics.exact_match(preds, golds, ignore_case=True) == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------------------- slot F1


def test_bio_spans_conlleval_semantics():
    assert metrics.bio_spans(["B-a", "I-b", "I-b", "O", "I-a"]) == [("a", 0, 1), ("b", 1, 3), ("a", 4, 5)]
    assert metrics.bio_spans(["B-a", "B-a", "I-a"]) == [("a", 0, 1), ("a", 1, 3)]
    assert metrics.bio_spans(["O", "O"]) == []
    assert metrics.bio_spans(["B-object_name", "I-object_name"]) == [("object_name", 0, 2)]
    with pytest.raises(ValueError):
        metrics.bio_spans(["B-a", "X"])


def test_slot_f1_partial_span_by_hand():
    gold = [["B-artist", "I-artist", "O", "B-playlist"], ["O", "I-city", "I-city"]]
    pred = [["B-artist", "O", "O", "B-playlist"], ["O", "B-city", "I-city"]]
    # Sentence 1: gold (artist 0-2), (playlist 3-4); pred (artist 0-1) is partial -> wrong, playlist right.
    # Sentence 2: gold I-city without B- starts a span (city 1-3) = pred (city 1-3).
    # 3 predicted, 3 gold, 2 correct -> P = R = F = 2/3.
    res = metrics.slot_f1(pred, gold)
    assert (res["n_pred"], res["n_gold"], res["n_correct"]) == (3, 3, 2)
    assert res["precision"] == pytest.approx(2 / 3)
    assert res["recall"] == pytest.approx(2 / 3)
    assert res["f1"] == pytest.approx(2 / 3)
    assert res["per_type"]["artist"]["f1"] == 0.0
    assert res["per_type"]["city"]["f1"] == 1.0


def test_slot_f1_invalid_pred_tags_and_empty():
    gold = [["B-x", "O"]]
    res = metrics.slot_f1([["B-x", "garbage"]], gold)
    assert res["f1"] == 1.0 and res["n_invalid_tags"] == 1
    # Nothing predicted, nothing gold: all zeros rather than a division error.
    res = metrics.slot_f1([["O"]], [["O"]])
    assert res["f1"] == 0.0 and res["n_gold"] == 0
    with pytest.raises(ValueError):
        metrics.slot_f1([["O"]], [["BAD"]])
