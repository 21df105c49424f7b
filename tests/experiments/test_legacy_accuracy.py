"""Intervals for pre-protocol tables that kept accuracies but no per-row predictions."""

from __future__ import annotations

import json

from experiments import legacy_accuracy


def test_writes_an_interval_for_every_claimed_pair_and_no_verdicts(tmp_path):
    llmembed = {
        "sst2": {
            "rows": [
                {"method": "llmembed", "accuracy": 0.814, "n_test": 1000},
                {"method": "finetuned_encoder", "accuracy": 0.860, "n_test": 1000},
                {"method": "encoder_only", "accuracy": 0.800, "n_test": 1000},
            ]
        }
    }
    multitask = {
        "rows": [
            {"model": "multi-task QLoRA (one model)", "snips intent acc": 0.353},
            {"model": "single-task QLoRA x2 (intent model + slot model)", "snips intent acc": 0.693},
        ]
    }
    for name, payload in (("llmembed", llmembed), ("qlora_multitask", multitask)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(payload))
    made = legacy_accuracy.main(["--results_root", str(tmp_path)])
    labels = [row["comparison"] for row in made["llmembed"]]
    assert labels == [
        "sst2: llmembed - finetuned_encoder",
        "sst2: encoder_only - finetuned_encoder",
        "sst2: llmembed - encoder_only",
    ]  # pairs whose methods are missing are left out
    fused = made["llmembed"][0]
    assert fused["difference"] < fused["ci_high"] < 0 and not fused["interval_above_minus_2"]
    (snips,) = made["qlora_multitask"]
    assert snips["rows"] == 150 and snips["ci_high"] < 0
    markdown = (tmp_path / "llmembed" / "intervals.md").read_text()
    assert "-4.6 [" in markdown and "met" not in markdown.replace("normal", "")  # one seed: never a verdict
    assert json.loads((tmp_path / "qlora_multitask" / "intervals.json").read_text())["exploratory"] is True
