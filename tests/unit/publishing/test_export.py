"""toolkit.publishing.export: a saved student made portable, merged on request, described in its card."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from toolkit.models import students
from toolkit.publishing.base_model import describe_base
from toolkit.publishing.export import export_student, publish_student
from toolkit.publishing.hub import push_to_hub
from toolkit.publishing.lineage import Lineage
from toolkit.run import Card


@pytest.fixture
def adapter_dir(tmp_path, tiny_llama_dir):
    model, tokenizer, _ = students.load_student(str(tiny_llama_dir), lora=True, lora_r=2, lora_alpha=4)
    out = tmp_path / "run"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _card() -> Card:
    lineage = Lineage(teacher_id="hf:teacher", generated_dataset="demo_gec", base_model="x")
    return Card(base_model="x", task="gec", recipe="lmcor", description="d", lineage=lineage)


def test_adapter_config_names_the_hub_base_and_no_local_path(adapter_dir, tiny_llama_dir):
    assert str(tiny_llama_dir) in (adapter_dir / "adapter_config.json").read_text()  # what PEFT wrote
    export = export_student(adapter_dir, base=describe_base("local:smollm2-135m"))
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert export.adapter and export.library_name == "peft" and not export.seq2seq
    assert export.folder == adapter_dir


def test_publish_student_returns_the_card_and_folder_to_push(adapter_dir, tiny_llama_dir):
    card, folder = publish_student(
        adapter_dir,
        _card(),
        "me/student",
        model_name_or_path=str(tiny_llama_dir),
        base_model_id="me/base",
        revision="r1",
    )
    assert folder == adapter_dir and card.library_name == "peft"
    assert card.base_model.hub_id == "me/base" and card.lineage.base_model == "me/base"
    assert card.lineage.base_model_revision == "r1"
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/student")' in card.extra_sections["Usage"]
    for path in adapter_dir.glob("*.json"):
        assert str(tiny_llama_dir) not in path.read_text(), path.name


def test_merge_needs_the_base_weights(adapter_dir):
    with pytest.raises(ValueError, match="base_path"):
        export_student(adapter_dir, base=describe_base("org/model"), merge=True)


def test_full_model_folder_is_exported_as_is(tmp_path, tiny_t5_dir):
    folder = shutil.copytree(tiny_t5_dir, tmp_path / "t5")
    export = export_student(folder, base=describe_base("org/t5"))
    assert not export.adapter and export.seq2seq and export.library_name == "transformers"
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        export_student(tmp_path / "empty", base=describe_base("org/t5"))


def test_card_pins_the_generated_dataset_commit_and_lists_rows_and_citation(fake_hub, adapter_dir, tmp_path):
    data = tmp_path / "pool"
    data.mkdir()
    (data / "rows.jsonl").write_text('{"a": 1}\n')
    sha = push_to_hub(data, "fake-user/pool", repo_type="dataset", token=fake_hub.token).rsplit("/", 1)[1]
    card = dataclasses.replace(_card(), lineage=Lineage(generated_dataset="fake-user/pool"))
    card, _ = publish_student(
        adapter_dir,
        card,
        "me/student",
        model_name_or_path="local:smollm2-135m",
        data_rows={"train": 10, "test": 4},
        citation="@article{x, title={X}}",
    )
    assert card.lineage.dataset_revision == sha  # main, pinned to the commit it points at
    assert card.lineage.base_model == "local:smollm2-135m"  # what the student really trained on
    assert "| test | 4 |" in card.extra_sections["Training and evaluation rows"]
    assert card.extra_sections["Citation"].startswith("```bibtex\n@article{x")
