"""toolkit.tasks.data_to_text: E2E NLG grouped per meaning representation."""

from __future__ import annotations

import pytest

from toolkit.tasks.data_to_text import load_e2e, parse_mr
from toolkit.tasks.readers import DataFormatError


def test_e2e_grouped_per_mr(data_root):
    dev, test = load_e2e("dev"), load_e2e("test")
    assert (len(dev), len(test)) == (547, 630)
    assert sum(len(r) for r in dev["references"]) == 4672
    assert sum(len(r) for r in test["references"]) == 4693
    assert len(set(test["mr"])) == 630
    assert test[0]["mr"] == "name[Blue Spice], eatType[coffee shop], area[city centre]"  # first seen
    assert test[0]["references"][:2] == [
        "A coffee shop in the city centre area called Blue Spice.",
        "Blue Spice is a coffee shop in city centre.",
    ]
    assert parse_mr(dev[0]["mr"]) == {"name": "Alimentum", "area": "city centre", "familyFriendly": "no"}


def test_e2e_bad_rows(tmp_path):
    (tmp_path / "e2e_nlg").mkdir()
    (tmp_path / "e2e_nlg" / "devset.csv").write_text('mr,ref\n"name[A]","A is nice."\n"name[B]",""\n')
    with pytest.raises(DataFormatError, match=r"devset\.csv:3: empty mr or ref"):
        load_e2e("dev", data_dir=tmp_path)
    with pytest.raises(ValueError, match="malformed"):
        parse_mr("name[A], oops")
