"""toolkit.tasks.translation: WMT22 with every system's output (en-de and into English)."""

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


@pytest.mark.parametrize(
    ("pair", "num_rows", "refs", "n_systems"),
    [("de-en", 1984, 2, 9), ("zh-en", 1875, 2, 12), ("cs-en", 1448, 2, 11)],
)
def test_wmt22_into_english(data_root, pair, num_rows, refs, n_systems):
    ds = load_wmt22(pair)
    assert len(ds) == num_rows and len(ds[0]["systems"]) == n_systems
    assert ds[0]["systems"] == sorted(ds[0]["systems"])
    assert all(len(c) == n_systems for c in ds["candidates"]) and all(len(r) == refs for r in ds["references"])
    src_lang = pair.split("-")[0]
    source = (data_root / f"wmt22_general/sources/generaltest2022.{pair}.src.{src_lang}").read_text().split("\n")
    assert ds[7]["source"] == source[7].strip()


def test_wmt22_csen_references_are_b_and_c(data_root):
    ds = load_wmt22("cs-en")
    ref_c = (data_root / "wmt22_general/references/generaltest2022.cs-en.ref.C.en").read_text().split("\n")
    assert ds[3]["references"][1] == ref_c[3].strip()


def test_wmt22_zhen_keeps_empty_system_line(data_root):
    ds = load_wmt22("zh-en")
    # the README counts lines from 1: line 1479 is row 1478
    assert ds[1478]["candidates"][ds[0]["systems"].index("Online-W")] == ""


def test_wmt22_unknown_pair():
    with pytest.raises(ValueError, match="not available"):
        load_wmt22("fr-en")
