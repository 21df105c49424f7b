"""Tests for toolkit.publishing.cards / toolkit.publishing.lineage / toolkit.publishing.hub: cards with lineage, redaction, and pushing to the fake Hub (tests/fakes/hub_server.py)."""

from __future__ import annotations

import json
import struct

import pytest
from huggingface_hub import DatasetCard, HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

from toolkit.publishing import cards, hub
from toolkit.publishing.lineage import Lineage

SECRET_KEY = "sk-live-abcdef1234567890"
SECRET_HF = "hf_SeCrEtToKeN0987654321"


def _lineage() -> Lineage:
    return Lineage(
        teacher_id="openai:gpt-4o-mini@api.openai.com",
        template_hash="3f2a9c1d",
        sampling={"temperature": 0.7, "top_p": 0.95, "n": 4, "max_tokens": 128},
        generated_dataset="runs/gen/jfleg-candidates",
        dataset_fingerprint="a1b2c3d4e5f6",
        dataset_revision="deadbeef",
        base_model="google/flan-t5-small",
        cost_usd=1.234567,
        num_teacher_calls=754,
        extra={"prompt_tokens": 12345, "api_key": SECRET_KEY},
    )


def _model_card(**overrides) -> str:
    kwargs = dict(
        model_name="lmcor-t5-small-jfleg",
        base_model="google/flan-t5-small",
        task="gec",
        recipe="lmcor",
        metrics={"test": {"gleu": 61.234, "n": 747}, "oracle_gleu": 70.5, "note": "greedy"},
        lineage=_lineage(),
        training_config={
            "learning_rate": 3e-4,
            "num_train_epochs": 3,
            "teacher": {"api_key": SECRET_KEY, "base_url": "https://api.openai.com/v1"},
            "hub_token": SECRET_HF,
        },
        datasets=["jhu-clsp/jfleg", "/data/local/jfleg.jsonl"],
        tags=["gec"],
        extra_sections={"Limitations": "English only."},
    )
    kwargs.update(overrides)
    return cards.render_model_card(**kwargs)


def _safetensors_bytes() -> bytes:
    """A valid tiny safetensors file (8-byte header length, JSON header, raw little-endian f32 data)."""
    data = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


# ------------------------------------------------------------------------------------------------ cards


def test_model_card_metadata_parses_and_has_metrics():
    text = _model_card()
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
    assert ModelCard(_model_card(task="summarization")).data.pipeline_tag == "summarization"
    assert ModelCard(_model_card(task="my-own-task")).data.pipeline_tag is None
    assert results[("oracle_gleu", None)].metric_value == pytest.approx(70.5)
    assert ("note", None) not in results  # non-numeric values only go to the table
    lineage_meta = data.to_dict()["distill_toolkit"]["lineage"]
    assert lineage_meta["teacher_id"] == "openai:gpt-4o-mini@api.openai.com"
    assert lineage_meta["dataset_fingerprint"] == "a1b2c3d4e5f6"


def test_model_card_sections_and_lineage_block():
    text = _model_card()
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
    text = _model_card()
    assert SECRET_KEY not in text and SECRET_HF not in text
    assert "api_key: <redacted>" in text and "hub_token: <redacted>" in text
    assert "base_url: https://api.openai.com/v1" in text  # non-secret config stays


def test_card_scrubs_secret_env_values_under_innocent_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    text = _model_card(training_config={"base_url": f"https://proxy.local/?k={SECRET_KEY}"})
    assert SECRET_KEY not in text


def test_local_base_model_kept_out_of_metadata(tmp_path):
    text = _model_card(base_model=str(tmp_path), lineage=None, metrics={})
    card = ModelCard(text)
    assert card.data.base_model is None
    assert card.data.eval_results is None
    assert str(tmp_path) in card.text and "No metrics recorded." in card.text
    named = ModelCard(_model_card(base_model="local:smollm2-135m"))
    assert named.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_dataset_card_parses():
    text = cards.render_dataset_card(
        name="JFLEG candidates (gpt-4o-mini)",
        description="Four teacher candidates per JFLEG sentence.",
        lineage=_lineage(),
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


def test_lineage_from_generated_rows():
    rows = [
        {
            "teacher_id": "hf:smollm2",
            "template_hash": "abc",
            "sampling": json.dumps({"temperature": 0.0}),
            "usage": json.dumps({"prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.01}),
        },
        {
            "teacher_id": "hf:smollm2",
            "template_hash": "abc",
            "sampling": json.dumps({"temperature": 0.0}),
            "usage": json.dumps({"prompt_tokens": 20, "completion_tokens": 7, "cost_usd": 0.02}),
        },
    ]
    lineage = Lineage.from_generated(rows, generated_dataset="gen/x")
    assert lineage.teacher_id == "hf:smollm2" and lineage.template_hash == "abc"
    assert lineage.sampling == {"temperature": 0.0}
    assert lineage.cost_usd == pytest.approx(0.03)
    assert lineage.num_teacher_calls == 2
    assert lineage.extra == {"prompt_tokens": 30, "completion_tokens": 12}
    assert lineage.dataset_fingerprint == Lineage.from_generated(list(rows)).dataset_fingerprint
    rows[0]["usage"] = json.dumps({"prompt_tokens": 11})
    assert Lineage.from_generated(rows).dataset_fingerprint != lineage.dataset_fingerprint


def test_lineage_from_hf_dataset():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(
        [{"x": 1, "teacher_id": "t", "template_hash": "h", "sampling": '{"n": 2}', "usage": "{}"}]
    )
    lineage = Lineage.from_generated(ds)
    assert lineage.dataset_fingerprint == ds._fingerprint
    assert lineage.sampling == {"n": 2} and lineage.cost_usd is None


# ------------------------------------------------------------------------------------------------ push


def _run_folder(tmp_path, card_text: str):
    folder = tmp_path / "run"
    folder.mkdir()
    cards.save_card(folder, card_text)
    (folder / "model.safetensors").write_bytes(_safetensors_bytes())
    (folder / "metrics.json").write_text(json.dumps({"gleu": 61.2}, indent=2))
    ckpt = folder / "checkpoint-500"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"old weights")
    (folder / "optimizer.pt").write_bytes(b"\x00optimizer state")
    return folder


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_push_folder_roundtrip(fake_hub, tmp_path, repo_type):
    card = (
        _model_card()
        if repo_type == "model"
        else cards.render_dataset_card(
            name="gen", description="d", lineage=_lineage(), num_rows=3, columns=["a"], stats={}
        )
    )
    folder = _run_folder(tmp_path, card)
    url = hub.push_to_hub(folder, "fake-user/student", repo_type=repo_type, token=fake_hub.token)

    prefix = "datasets/" if repo_type == "dataset" else ""
    assert url.startswith(f"{fake_hub.url}/{prefix}fake-user/student/commit/")
    files = fake_hub.files("fake-user/student", repo_type)
    assert set(files) == {".gitattributes", "README.md", "model.safetensors", "metrics.json"}
    for name in ("README.md", "model.safetensors", "metrics.json"):
        assert files[name] == (folder / name).read_bytes()
    assert "model.safetensors" in fake_hub.lfs_paths("fake-user/student", repo_type)
    assert any(r.method == "PUT" and r.path.startswith("/__fake_lfs/upload/") for r in fake_hub.requests)

    # Download back through huggingface_hub against the fake.
    for name in ("model.safetensors", "README.md", "metrics.json"):
        path = hf_hub_download("fake-user/student", name, repo_type=repo_type, cache_dir=tmp_path / "dl")
        assert open(path, "rb").read() == (folder / name).read_bytes()
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("fake-user/student", "optimizer.pt", repo_type=repo_type, cache_dir=tmp_path / "dl")
    listed = HfApi(token=fake_hub.token).list_repo_files("fake-user/student", repo_type=repo_type)
    assert sorted(listed) == sorted(files)

    # Auth was sent on every API call; the token itself appears in no body, no other header, no file.
    api_calls = [r for r in fake_hub.requests if r.path.startswith("/api/") and r.method == "POST"]
    assert api_calls and all(r.auth == "valid" for r in api_calls)
    for request in fake_hub.requests:
        assert fake_hub.token.encode() not in request.body
        assert fake_hub.token not in json.dumps(request.headers)
    assert all(fake_hub.token.encode() not in data for data in files.values())


def test_pushed_model_card_parses_from_hub(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, _model_card())
    hub.push_to_hub(folder, "fake-user/card", token=fake_hub.token)
    card = ModelCard(fake_hub.files("fake-user/card")["README.md"].decode())
    assert card.data.base_model == "google/flan-t5-small"
    assert {r.metric_type for r in card.data.eval_results} == {"gleu", "n", "oracle_gleu"}
    text = card.content
    assert SECRET_KEY not in text and SECRET_HF not in text
    assert any(r.path == "/api/validate-yaml" for r in fake_hub.requests)  # the Hub-side check ran and passed


def test_push_twice_updates(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, _model_card())
    first = hub.push_to_hub(folder, "fake-user/twice", token=fake_hub.token, commit_message="first")
    (folder / "metrics.json").write_text(json.dumps({"gleu": 65.0}))
    second = hub.push_to_hub(folder, "fake-user/twice", token=fake_hub.token, commit_message="second")
    assert first != second
    assert fake_hub.commits("fake-user/twice") == ["second", "first", "initial commit"]
    assert json.loads(fake_hub.files("fake-user/twice")["metrics.json"]) == {"gleu": 65.0}
    # The unchanged safetensors was already in LFS: the second push uploaded no LFS content.
    puts = [r for r in fake_hub.requests if r.method == "PUT"]
    assert len(puts) == 1


def test_push_uses_hf_token_env_private_and_branch(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    folder = _run_folder(tmp_path, _model_card())
    hub.push_to_hub(folder, "fake-user/priv", private=True, revision="v1")
    assert fake_hub.is_private("fake-user/priv")
    assert "model.safetensors" in fake_hub.files("fake-user/priv", revision="v1")
    assert set(fake_hub.files("fake-user/priv", revision="main")) == {".gitattributes"}
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RepositoryNotFoundError):  # private repo: anonymous download refused
        hf_hub_download("fake-user/priv", "metrics.json", revision="v1", cache_dir=tmp_path / "anon")


def test_push_custom_ignore_patterns(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, _model_card())
    hub.push_to_hub(folder, "fake-user/all", token=fake_hub.token, ignore_patterns=["metrics.json"])
    files = fake_hub.files("fake-user/all")
    assert "metrics.json" not in files
    assert "checkpoint-500/model.safetensors" in files and "optimizer.pt" in files


def test_push_without_token_fails_early(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, _model_card())
    with pytest.raises(RuntimeError, match="token"):
        hub.push_to_hub(folder, "fake-user/x")
    assert fake_hub.requests == []


def test_push_wrong_token_rejected(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, _model_card())
    with pytest.raises(HfHubHTTPError):
        hub.push_to_hub(folder, "fake-user/x", token="hf_wrong_token_123")
    assert fake_hub.requests and all(r.auth == "invalid" for r in fake_hub.requests)


def test_push_rejects_broken_card(fake_hub, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: [unclosed\n---\n# x\n")
    with pytest.raises(ValueError):
        hub.push_to_hub(folder, "fake-user/bad", token=fake_hub.token)
    assert fake_hub.requests == []


def test_metric_result_objects_use_their_score():
    from toolkit.evaluation.metrics import MetricResult

    result = MetricResult(name="bleu", score=31.5, signature="BLEU|nrefs:1")
    card = ModelCard(_model_card(metrics={"test": {"bleu": result}}))
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("bleu", 31.5)]
