"""toolkit.publishing.base_model: the base a student names, so that it resolves off this machine."""

from __future__ import annotations

import pytest

from toolkit.models.local import LOCAL_MODELS
from toolkit.publishing.base_model import describe_base
from toolkit.publishing.lineage import is_hub_id


def test_hub_ids_need_a_namespace_and_are_no_local_path(tmp_path):
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    for name in ("demo_gec", "jfleg:dev", str(tmp_path), "./model", "~/model", "", None):
        assert not is_hub_id(name)


def test_gguf_base_names_its_upstream_id_and_its_quantisation():
    base = describe_base("local:smollm2-135m")
    spec = LOCAL_MODELS["smollm2-135m"]
    assert base.hub_id == base.upstream_id == spec.upstream_id
    assert base.is_gguf_derived and base.quantization == spec.quantization
    assert base.gguf_package == spec.install_cmd.split()[-1] and "==" in base.gguf_package
    assert "Warning" in base.card_text() and spec.quantization in base.card_text()


def test_base_model_id_wins_and_keeps_the_gguf_story():
    base = describe_base("local:smollm2-135m", base_model_id="me/smollm2-q4-dequantised", revision="v1")
    assert base.hub_id == "me/smollm2-q4-dequantised" and base.revision == "v1"
    assert base.upstream_id == LOCAL_MODELS["smollm2-135m"].upstream_id  # the metadata names the true upstream
    assert base.is_gguf_derived and "Warning" not in base.card_text()


def test_plain_local_checkpoint_is_not_gguf_derived():
    base = describe_base("local:minilm-l6")
    assert base.hub_id == LOCAL_MODELS["minilm-l6"].upstream_id and not base.is_gguf_derived


def test_hub_base_pins_the_commit_it_came_from():
    base = describe_base("org/model", revision="main", commit_hash="a" * 40)
    assert (base.hub_id, base.revision, base.upstream_id) == ("org/model", "a" * 40, "org/model")
    assert "a" * 40 in base.card_text()


def test_local_folder_never_shows_its_path(tmp_path):
    folder = tmp_path / "my-base"
    folder.mkdir()
    base = describe_base(str(folder))
    assert base.hub_id is None and base.loaded_from == "my-base"
    assert str(tmp_path) not in base.card_text() and "--base_model_id" in base.card_text()
    given = describe_base(str(folder), base_model_id="me/my-base")
    assert given.hub_id == given.upstream_id == "me/my-base"


def test_base_model_id_must_be_a_hub_id(tmp_path):
    with pytest.raises(ValueError, match="--base_model_id"):
        describe_base("local:smollm2-135m", base_model_id=str(tmp_path))
