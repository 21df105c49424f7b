"""toolkit.publishing.hub: pushing run folders and file maps to the fake Hub (tests/fakes/hub_server.py)."""

from __future__ import annotations

import json
import struct

import pytest
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

from tests.unit.publishing.samples import SECRET_HF, SECRET_KEY, sample_lineage, sample_model_card
from toolkit.publishing import cards, hub


def _safetensors_bytes() -> bytes:
    """A valid tiny safetensors file (8-byte header length, JSON header, raw little-endian f32 data)."""
    data = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


# ------------------------------------------------------------------------------------------------ cards


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
        sample_model_card()
        if repo_type == "model"
        else cards.render_dataset_card(
            name="gen", description="d", lineage=sample_lineage(), num_rows=3, columns=["a"], stats={}
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
    folder = _run_folder(tmp_path, sample_model_card())
    hub.push_to_hub(folder, "fake-user/card", token=fake_hub.token)
    card = ModelCard(fake_hub.files("fake-user/card")["README.md"].decode())
    assert card.data.base_model == "google/flan-t5-small"
    assert {r.metric_type for r in card.data.eval_results} == {"gleu", "n", "oracle_gleu"}
    text = card.content
    assert SECRET_KEY not in text and SECRET_HF not in text
    assert any(r.path == "/api/validate-yaml" for r in fake_hub.requests)  # the Hub-side check ran and passed


def test_push_twice_updates(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, sample_model_card())
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
    folder = _run_folder(tmp_path, sample_model_card())
    hub.push_to_hub(folder, "fake-user/priv", private=True, revision="v1")
    assert fake_hub.is_private("fake-user/priv")
    assert "model.safetensors" in fake_hub.files("fake-user/priv", revision="v1")
    assert set(fake_hub.files("fake-user/priv", revision="main")) == {".gitattributes"}
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RepositoryNotFoundError):  # private repo: anonymous download refused
        hf_hub_download("fake-user/priv", "metrics.json", revision="v1", cache_dir=tmp_path / "anon")


def test_push_custom_ignore_patterns(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, sample_model_card())
    hub.push_to_hub(folder, "fake-user/all", token=fake_hub.token, ignore_patterns=["metrics.json"])
    files = fake_hub.files("fake-user/all")
    assert "metrics.json" not in files
    assert "checkpoint-500/model.safetensors" in files and "optimizer.pt" in files


def test_push_without_token_fails_early(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, sample_model_card())
    with pytest.raises(RuntimeError, match="token"):
        hub.push_to_hub(folder, "fake-user/x")
    assert fake_hub.requests == []


def test_push_wrong_token_rejected(fake_hub, tmp_path):
    folder = _run_folder(tmp_path, sample_model_card())
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


def test_push_files_puts_each_file_where_asked(fake_hub, tmp_path):
    card = tmp_path / "README.md"
    card.write_text(sample_model_card())
    summary = tmp_path / "summary.json"
    summary.write_text('{"rows": 3}')
    files = {"README.md": card, "extras/summary.json": summary}
    hub.push_files(files, "fake-user/mapped", token=fake_hub.token, commit_message="mapped")
    pushed = fake_hub.files("fake-user/mapped")
    assert pushed["extras/summary.json"] == b'{"rows": 3}' and "summary.json" not in pushed
    assert fake_hub.commits("fake-user/mapped")[0] == "mapped"


def test_push_files_checks_before_any_request(fake_hub, tmp_path):
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: [unclosed\n---\n# x\n")
    with pytest.raises(ValueError, match="Invalid card metadata"):
        hub.push_files({"README.md": card}, "fake-user/bad", token=fake_hub.token)
    with pytest.raises(RuntimeError, match="token"):
        hub.push_files({"README.md": card}, "fake-user/bad")
    assert fake_hub.requests == []
