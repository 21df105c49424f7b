"""A recipe run pushed to the fake Hub loads elsewhere and generates what the run printed; its results reach
TensorBoard; its adapter names no path of this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import lmcor as lmcor_recipe
from tests.publishing.fresh_process import run_fresh
from toolkit.publishing import hub

BASE_REPO = "fake-user/tiny-base"
RUN_REPO = "fake-user/lmcor-run"

# Loads the pushed student from the Hub only, then decodes the run's test inputs as the recipe does.
REGENERATE = """
import json, sys
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
from toolkit.models import students
tokenizer = AutoTokenizer.from_pretrained({repo!r})
model = AutoPeftModelForCausalLM.from_pretrained({repo!r}).eval()
inputs = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {inputs!r}
print(json.dumps(students.generate(model, tokenizer, inputs, max_new_tokens=8, batch_size=16, max_source_len=96)))
"""


def write_pool(path: Path, n: int = 24) -> Path:
    subjects = ["she", "he", "the dog", "my friend", "the man", "our teacher"]
    rows = []
    for i in range(n):
        subject = subjects[i % len(subjects)]
        reference = f"{subject} went to school yesterday ."
        candidates = [f"{subject} goes to school yesterday .", reference, f"{subject} go to the school ."]
        source = f"{subject} go to school yesterday ."
        rows.append({"id": f"t{i}", "source": source, "references": [reference], "candidates": candidates})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_lmcor_run_pushed_loads_from_the_hub_alone(fake_hub, tmp_path, base_dir, monkeypatch):
    pytest.importorskip("tensorboard")
    hub.push_to_hub(base_dir, BASE_REPO, token=fake_hub.token)
    out = tmp_path / "run"
    argv = [
        "--task",
        "jsonl",
        "--task_type",
        "gec",
        "--pool_path",
        str(write_pool(tmp_path / "pool.jsonl")),
        "--dev_size",
        "4",
        "--test_size",
        "6",
        "--model_name_or_path",
        str(base_dir),
        "--output_dir",
        str(out),
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "5e-3",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "tensorboard",
        "--max_new_tokens",
        "8",
        "--max_source_len",
        "96",
        "--max_target_len",
        "32",
        "--k",
        "3",
        "--separator",
        " || ",
        "--chat_template",
        "false",
        "--lora_r",
        "4",
        "--base_model_id",
        BASE_REPO,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        RUN_REPO,
        "--hub_token",
        fake_hub.token,
    ]
    lmcor_recipe.main(*lmcor_recipe.make_parser().parse_args_and_config(argv))

    adapter_config = (out / "adapter_config.json").read_text()
    assert json.loads(adapter_config)["base_model_name_or_path"] == BASE_REPO
    assert str(tmp_path) not in adapter_config and str(Path.home()) not in adapter_config
    pushed = fake_hub.files(RUN_REPO)
    for name in ("adapter_config.json", "README.md"):  # the files that tell a reader what the model is
        assert str(tmp_path).encode() not in pushed[name], name

    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    inputs = [row["input"] for row in predictions]
    code = REGENERATE.format(repo=RUN_REPO, inputs=inputs)
    regenerated = json.loads(run_fresh(code, fake_hub.url, tmp_path / "fresh", keep_toolkit=True).splitlines()[-1])
    assert regenerated == [row["prediction"] for row in predictions]

    from tests.unit.training.test_tracking import tensorboard_scalars

    final = {tag: points for tag, points in tensorboard_scalars(out).items() if "final/test/" in tag}
    assert any("corrector" in tag for tag in final)
