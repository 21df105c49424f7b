"""toolkit.tasks.nli: e-SNLI (two sources) and ANLI R1."""

from __future__ import annotations

import json

import pytest

from toolkit.tasks.nli import load_anli1, load_esnli
from toolkit.tasks.readers import DataFormatError


def test_esnli_both_sources_agree(data_root):
    dev, test = load_esnli("dev"), load_esnli("test")
    assert (len(dev), len(test)) == (9842, 9824)
    assert all(len(e) == 3 and all(e) for e in dev["explanations"][:500])
    assert (
        dev[0]["label"] == "neutral" and dev[0]["premise"] == "Two women are embracing while holding to go packages ."
    )
    palm = load_esnli("valid", source="palm")
    # the PaLM folder's 0/1/2 labels agree with e-SNLI's words on every row (0=entailment, 1=neutral, 2=contr.)
    assert palm["label"] == dev["label"] and palm["id"] == dev["id"]
    assert set(dev["label"]) == {"entailment", "neutral", "contradiction"}


def test_anli1(data_root):
    valid, test = load_anli1("valid"), load_anli1("test")
    assert (len(valid), len(test)) == (1000, 1000)
    assert valid[0]["id"] == "bf628cf5-6948-4595-a6d0-daf99beb47b9" and valid[0]["label"] == "contradiction"


def test_nli_bad_label(tmp_path):
    folder = tmp_path / "distill_step_by_step_palm" / "anli1"
    folder.mkdir(parents=True)
    rows = [{"premise": "p", "hypothesis": "h", "label": 0}, {"premise": "p", "hypothesis": "h", "label": 7}]
    (folder / "anli1_test.json").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataFormatError, match=r"anli1_test\.json:2: unknown NLI label 7"):
        load_anli1("test", data_dir=tmp_path)
