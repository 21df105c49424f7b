"""The learned reranker's training target (closest candidate) and the mapping of its outputs onto candidates."""

from __future__ import annotations

import pytest

from toolkit.methods.lmcor.reranker import closest_candidate, map_to_candidate, map_to_candidates

CANDIDATES = ["the cat sat on the mat .", "a dog ran home .", "the cat is on a mat ."]


def test_closest_candidate_is_the_one_with_the_highest_sentence_chrf():
    assert closest_candidate(CANDIDATES, "the cat sat on a mat .") == CANDIDATES[0]
    assert closest_candidate(CANDIDATES, "a dog ran to his home .") == CANDIDATES[1]


def test_closest_candidate_takes_the_first_of_equal_candidates():
    assert closest_candidate(["same words", "other text", "same words"], "same words") == "same words"
    assert closest_candidate(["x y", "x y"], "z") == "x y"


def test_a_generation_that_is_a_candidate_maps_to_it_exactly():
    assert map_to_candidate("a dog ran home .", CANDIDATES) == (CANDIDATES[1], True)
    assert map_to_candidate("  a dog\nran  home . ", CANDIDATES) == (CANDIDATES[1], True)  # whitespace only


def test_any_other_generation_maps_to_the_candidate_with_the_highest_chrf():
    assert map_to_candidate("the cat is on a mat", CANDIDATES) == (CANDIDATES[2], False)
    assert map_to_candidate("dog ran home", CANDIDATES) == (CANDIDATES[1], False)
    assert map_to_candidate("", CANDIDATES) == (CANDIDATES[0], False)


def test_map_to_candidates_counts_the_chrf_fallbacks():
    generated = ["a dog ran home .", "the cat is on a mat", "the cat sat on the mat ."]
    outputs, summary = map_to_candidates(generated, [CANDIDATES] * 3)
    assert outputs == [CANDIDATES[1], CANDIDATES[2], CANDIDATES[0]]
    assert summary == {"rows": 3, "exact": 2, "mapped_by_chrf": 1, "mapped_by_chrf_share": pytest.approx(1 / 3)}


def test_mapping_needs_candidates_and_one_list_per_generation():
    with pytest.raises(ValueError, match="at least one candidate"):
        map_to_candidate("x", [])
    with pytest.raises(ValueError, match="2 generations for 1"):
        map_to_candidates(["x", "y"], [CANDIDATES])
