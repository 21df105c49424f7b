"""toolkit.publishing.lineage: lineage collected from generated rows and datasets; Hub commits pinned."""

from __future__ import annotations

import json

import pytest

from toolkit.publishing.hub import push_to_hub
from toolkit.publishing.lineage import Lineage, hub_commit


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


def test_hub_commit_pins_a_branch_to_its_sha(fake_hub, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "rows.jsonl").write_text('{"a": 1}\n')
    url = push_to_hub(folder, "fake-user/rows", repo_type="dataset", token=fake_hub.token)
    sha = hub_commit("fake-user/rows", repo_type="dataset")
    assert sha is not None and len(sha) == 40 and url.endswith(sha)
    assert hub_commit("fake-user/missing", repo_type="dataset") is None
    assert hub_commit("demo_gec", repo_type="dataset") is None  # a local name: nothing to ask


def test_hub_commit_offline_is_unknown(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_commit("org/data", repo_type="dataset") is None
