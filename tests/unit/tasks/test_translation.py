"""toolkit.tasks.translation: WMT22 with its 9 en-de system outputs."""

from __future__ import annotations

import pytest

from toolkit.tasks.translation import load_wmt22

WMT_SYSTEMS = [
    "JDExploreAcademy",
    "Lan-Bridge",
    "Online-A",
    "Online-B",
    "Online-G",
    "Online-W",
    "Online-Y",
    "OpenNMT",
    "PROMT",
]


def test_wmt22_ende(data_root):
    ds = load_wmt22("en-de")
    assert len(ds) == 2037
    assert ds[0]["systems"] == WMT_SYSTEMS  # fixed, sorted order
    assert all(len(c) == 9 for c in ds["candidates"]) and all(len(r) == 2 for r in ds["references"])
    # candidate k is line i of system k's file
    online_b = (data_root / "wmt22_general/system-outputs/generaltest2022.en-de.hyp.Online-B.de").read_text()
    assert ds[5]["candidates"][WMT_SYSTEMS.index("Online-B")] == online_b.split("\n")[5].strip()


def test_wmt22_deen_has_no_systems(data_root):
    ds = load_wmt22("de-en")
    assert len(ds) == 1984 and ds[0]["candidates"] == [] and ds[0]["systems"] == []
    assert all(len(r) == 2 for r in ds["references"])
    with pytest.raises(ValueError, match="not available"):
        load_wmt22("fr-en")
