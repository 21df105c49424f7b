"""Plug-and-play: a saved corrector reads candidates of systems it never trained on."""

from __future__ import annotations

from tests.unit.methods.lmcor.samples import held_out_config, mt_rows
from toolkit.methods.lmcor.evaluation import CORRECTOR
from toolkit.methods.lmcor.plug import evaluate_saved_corrector, with_test_systems

SYSTEMS = ["S1", "S2", "S3", "U1", "U2"]


def test_with_test_systems_swaps_sides_without_overlap():
    config = held_out_config(k=2)
    seen = with_test_systems(config, ["S1", "S2"])
    assert seen.test_systems == ["S1", "S2"] and seen.train_systems == ["S3", "U1", "U2"]
    assert with_test_systems(config, []).test_systems == [] and with_test_systems(config, []).train_systems == []
    assert config.test_systems == ["U1", "U2"]  # the run's own config is left as it was


def test_saved_corrector_reads_other_systems(tiny_llama_dir):
    rows = mt_rows(SYSTEMS, 6)
    res = evaluate_saved_corrector(
        tiny_llama_dir,
        held_out_config(k=2),
        rows,
        base_model=str(tiny_llama_dir),
        max_source_len=64,
        chat_template=False,
        max_new_tokens=4,
        batch_size=4,
        test_systems=["S1", "S2"],
        dev_rows=rows[:3],
    )
    assert res["best_single_system"] in ("S1", "S2") and res["test_rows"] == 6
    assert all(p["input"].endswith(f"S1 out {i} || S2 out {i}") for i, p in enumerate(res["predictions"]))
    assert [r["method"] for r in res["table"]][-1] == CORRECTOR
