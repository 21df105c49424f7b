"""toolkit.tasks.gec: JFLEG with 4 references per sentence."""

from __future__ import annotations

import pytest

from toolkit.tasks.gec import load_jfleg
from toolkit.tasks.readers import DataFormatError


def test_jfleg(data_root):
    ds = load_jfleg()
    assert len(ds) == 754 and all(len(r) == 4 for r in ds["references"])
    assert ds[1]["source"] == "For not use car ."
    assert ds[1]["references"][0] == "Not for use with a car ."
    spell = load_jfleg(spellchecked=True)
    assert len(spell) == 754 and spell["references"] == ds["references"]
    assert sum(a != b for a, b in zip(spell["source"], ds["source"])) > 100  # the spell-checker changed many
    with pytest.raises(ValueError, match="not available"):
        load_jfleg("train")


def test_jfleg_misaligned_reference(tmp_path):
    folder = tmp_path / "jfleg" / "dev"
    folder.mkdir(parents=True)
    (folder / "dev.src").write_text("a .\nb .\n")
    for i in range(4):
        (folder / f"dev.ref{i}").write_text("A .\nB .\n" if i != 2 else "A .\n")
    with pytest.raises(DataFormatError) as err:
        load_jfleg(data_dir=tmp_path)
    assert "dev.ref2" in str(err.value) and "dev.src" in str(err.value)
