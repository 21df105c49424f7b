"""toolkit.tasks.load: the registry, generic local files, and a package import without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from toolkit import tasks


def test_import_does_not_load_torch():
    code = "import sys, toolkit.tasks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_registry_names_cover_the_brief():
    for name in ("jfleg", "wmt22_ende", "e2e", "sst2", "ag_news", "r8", "20ng", "snips", "slurp", "esnli"):
        assert name in tasks.REGISTRY
    for name in ("anli1", "cqa", "svamp", "palm_cqa", "palm_svamp", "palm_anli1", "palm_esnli"):
        assert name in tasks.REGISTRY


def test_load_by_name(data_root):
    assert len(tasks.load("jfleg", "dev")) == 754
    both = tasks.load("svamp")
    assert {k: len(v) for k, v in both.items()} == {"train": 800, "test": 200}
    assert len(tasks.load("wmt22", "test")) == 2037  # alias
    assert len(tasks.load("slurp_split", "dev")) > 0
    with pytest.raises(ValueError, match="no split 'validation'"):
        tasks.load("sst2", "validation")


def test_load_with_explicit_data_dir(tmp_path):
    folder = tmp_path / "snips" / "valid"
    folder.mkdir(parents=True)
    (folder / "seq.in").write_text("play it ")
    (folder / "seq.out").write_text("O O ")
    (folder / "label").write_text("PlayMusic")
    ds = tasks.load("snips", "valid", data_dir=tmp_path)
    assert ds[0] == {
        "id": "snips-valid-0",
        "text": "play it",
        "tokens": ["play", "it"],
        "slot_tags": ["O", "O"],
        "intent": "PlayMusic",
    }


def test_load_local_path_through_registry(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"text": "hi", "label": 1}\n')
    assert tasks.load(str(path)).to_list() == [{"text": "hi", "label": 1}]
    with pytest.raises(TypeError, match="only apply to registered tasks"):
        tasks.load(str(path), strip_headers=False)
