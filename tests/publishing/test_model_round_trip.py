"""A pushed student loads elsewhere: adapter and merged model, loaded only from the fake Hub in a fresh process.

Each test pushes what a run would push, then runs the card's own usage snippet in a new Python process whose HF
cache is empty and whose only Hub is the fake one (``tests/fakes/hub_server.py``): the snippet must load the model
and print the generation the run itself produced.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from tests.publishing.fresh_process import run_fresh
from toolkit.models import students
from toolkit.publishing import cards, hub
from toolkit.publishing.base_model import describe_base
from toolkit.publishing.export import export_student, usage_snippet

BASE_REPO = "fake-user/tiny-base"


def card_snippet(readme: str) -> str:
    """The python block of the card's Usage section."""
    usage = ModelCard(readme).text.split("## Usage", 1)[1]
    return re.search(r"```python\n(.*?)```", usage, re.DOTALL).group(1)


def greedy_text(model, tokenizer, prompt: str = "Hello") -> str:
    """What the card's snippet does, in this process."""
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    return tokenizer.decode(output[0], skip_special_tokens=True)


@pytest.fixture
def trained_adapter(tmp_path, base_dir):
    """A saved LoRA student on the tiny Llama, with adapter weights that change its output."""
    model, tokenizer, _ = students.load_student(str(base_dir), lora=True, lora_r=4, lora_alpha=8)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    model.eval()
    out = tmp_path / "run"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, model, tokenizer


def push_base(fake_hub, base_dir) -> str:
    return hub.push_to_hub(base_dir, BASE_REPO, token=fake_hub.token)


def student_card(export, repo_id: str) -> str:
    return cards.render_model_card(
        model_name=repo_id.split("/")[1],
        base_model=export.base,
        task="gec",
        recipe="lmcor",
        metrics={"test": {"gleu": 50.0}},
        library_name=export.library_name,
        extra_sections=export.card_sections(repo_id),
    )


def test_adapter_loads_from_the_hub_alone_and_generates_what_the_run_did(
    fake_hub, tmp_path, base_dir, trained_adapter
):
    out, model, tokenizer = trained_adapter
    push_base(fake_hub, base_dir)
    base = describe_base(str(base_dir), base_model_id=BASE_REPO)
    export = export_student(out, base=base)
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == BASE_REPO
    assert str(tmp_path) not in (out / "adapter_config.json").read_text()
    repo_id = "fake-user/lmcor-student"
    cards.save_card(out, student_card(export, repo_id))
    hub.push_to_hub(out, repo_id, token=fake_hub.token)

    expected = greedy_text(model, tokenizer)
    with model.disable_adapter():
        assert greedy_text(model, tokenizer) != expected  # the adapter matters: loading the base alone differs
    snippet = card_snippet(fake_hub.files(repo_id)["README.md"].decode())
    assert "AutoPeftModelForCausalLM" in snippet
    assert run_fresh(snippet, fake_hub.url, tmp_path).strip() == expected.strip()


def test_merged_model_loads_with_no_base(fake_hub, tmp_path, base_dir, trained_adapter):
    out, model, tokenizer = trained_adapter
    base = describe_base(str(base_dir), base_model_id=BASE_REPO)
    export = export_student(out, base=base, base_path=base_dir, merge=True)
    assert export.folder == out / "merged" and not export.adapter
    assert (export.folder / "model.safetensors").is_file() and not (export.folder / "adapter_config.json").exists()
    assert str(tmp_path) not in (export.folder / "config.json").read_text()
    repo_id = "fake-user/lmcor-student-merged"
    cards.save_card(export.folder, student_card(export, repo_id))
    hub.push_to_hub(export.folder, repo_id, token=fake_hub.token)

    merged = AutoModelForCausalLM.from_pretrained(export.folder).eval()
    inputs = tokenizer(["Hello", "the cat sat"], return_tensors="pt", padding=True)
    with torch.no_grad():  # the merge changes the arithmetic, not the function: same logits up to rounding
        torch.testing.assert_close(merged(**inputs).logits, model(**inputs).logits, atol=1e-4, rtol=1e-4)

    snippet = card_snippet(fake_hub.files(repo_id)["README.md"].decode())
    assert "AutoModelForCausalLM" in snippet and "Peft" not in snippet
    fake_hub.requests.clear()
    assert run_fresh(snippet, fake_hub.url, tmp_path).strip() == greedy_text(merged, tokenizer).strip()
    assert not any(BASE_REPO in request.path for request in fake_hub.requests)  # never asked for a base
    assert any(repo_id in request.path for request in fake_hub.requests)


def test_usage_snippet_names_the_right_classes():
    assert "AutoPeftModelForSeq2SeqLM" in usage_snippet("a/b", adapter=True, seq2seq=True)
    assert "AutoModelForCausalLM" in usage_snippet("a/b", adapter=False, seq2seq=False)
    compile(usage_snippet("a/b", adapter=True, seq2seq=False), "snippet", "exec")


def test_student_loaded_at_a_revision_names_that_commit(fake_hub, monkeypatch, base_dir, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    first = push_base(fake_hub, base_dir).rsplit("/", 1)[1]
    (base_dir / "notes.txt").write_text("a second commit")
    latest = push_base(fake_hub, base_dir).rsplit("/", 1)[1]
    (base_dir / "notes.txt").unlink()
    students.load_student(BASE_REPO, revision=first)
    weights = [r.path for r in fake_hub.requests if r.path.endswith("model.safetensors") and r.method == "GET"]
    assert weights and all(f"/resolve/{first}/" in path for path in weights)
    assert describe_base(BASE_REPO, revision=first).revision == first
    assert describe_base(BASE_REPO, revision="main").revision == latest  # a branch is pinned to its commit
