"""LMCorConfig checks itself and resolves its derived values in its own object."""

from __future__ import annotations

import dataclasses
import json

import pytest

from toolkit.methods.lmcor.config import LMCorConfig


def test_task_type_and_eval_tokenize_resolve_from_the_task():
    jfleg = LMCorConfig(task="jfleg")
    assert (jfleg.task_type, jfleg.eval_tokenize, jfleg.hyp_tokenize) == ("gec", "ptb", "ptb")
    wmt = LMCorConfig(task="wmt22_deen")
    assert (wmt.task_type, wmt.eval_tokenize, wmt.hyp_tokenize) == ("mt", "none", None)
    assert wmt.metrics == ("bleu", "chrf")
    assert LMCorConfig(task="jfleg", eval_tokenize="none").hyp_tokenize is None  # an explicit choice is kept


def test_candidates_read_is_one_for_the_single_candidate_ablation():
    assert LMCorConfig(k=4).candidates_read == 4
    assert LMCorConfig(k=4, single_candidate=True).candidates_read == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"task": "nope"}, "task must be one of"),
        ({"task": "jsonl", "pool_path": "x"}, "task_type"),
        ({"task": "jsonl", "task_type": "gec"}, "pool_path"),
        ({"k": 0}, "k and augment"),
        ({"augment": 0}, "k and augment"),
        ({"split_block": -1}, "split_block"),
        ({"no_candidates": True, "single_candidate": True}, "exclude"),
        ({"eval_tokenize": "moses"}, "eval_tokenize"),
        ({"train_systems": ["A", "B"], "test_systems": ["B"]}, "overlap"),
        ({"train_systems": ["A"]}, "both"),
        ({"mode": "rank"}, "mode must be one of"),
        ({"mode": "reranker", "k": 1}, "k >= 2"),
        ({"mode": "reranker", "no_candidates": True}, "k >= 2"),
        ({"mode": "reranker", "single_candidate": True}, "k >= 2"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LMCorConfig(**kwargs)


def test_test_and_dev_paths_are_validated(tmp_path):
    with pytest.raises(ValueError, match="test_path"):
        LMCorConfig(test_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="dev_path"):
        LMCorConfig(dev_path="jfleg:test")  # not in the data folder: a local file is the way
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"source": "s", "references": ["r"]}) + "\n")
    with pytest.raises(ValueError, match="same"):
        LMCorConfig(test_path=str(path), dev_path=str(path))
    assert LMCorConfig(test_path="e2e:test", task="e2e").test_path == "e2e:test"


def test_replace_keeps_the_resolved_values_and_checks_again():
    config = LMCorConfig(task="jfleg", k=4)
    assert dataclasses.replace(config, k=2).eval_tokenize == "ptb"
    with pytest.raises(ValueError, match="exclude"):
        dataclasses.replace(config, no_candidates=True, single_candidate=True)
