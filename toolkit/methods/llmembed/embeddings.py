"""Frozen-backbone feature extraction and its disk cache (the expensive half of LLMEmbed).

Run a bare backbone (``AutoModel``: no LM head, whose vocab-sized matmul would dominate a 135M model) over the
texts *once*, pool the hidden states of several layers into one vector per (text, layer)
(:func:`toolkit.methods.llmembed.head.pool_hidden`), and cache them on disk. One forward pass yields every layer
(``output_hidden_states=True``), batches are length-sorted to minimise padding (order is restored), and
everything runs under ``torch.inference_mode``. Each model keeps its own position scheme under either padding
side (:mod:`toolkit.models.backbone_inputs`).

Features are cached as safetensors keyed by model, layers, pooling, max length and a hash of the texts; a cache
hit never loads the model, and still reports the cost of the extraction that built the entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModel

from toolkit.meter import Cost
from toolkit.methods.llmembed.head import POOLING_CHOICES, pool_hidden, resolve_layers
from toolkit.models.backbone_inputs import forward_params, model_inputs
from toolkit.models.loading import default_device, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = "2"  # 2: RoBERTa-family features keep their own positions


# ---------------------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ExtractionSpec:
    """What to extract from one backbone; everything here is part of the cache key."""

    model: str
    layers: list[int] = field(default_factory=lambda: [-1])
    pooling: str = "mean"
    max_length: int = 128
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {self.pooling!r}")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")


def load_backbone(name: str, device: str | None = None, padding_side: str | None = None):
    """Load a bare backbone (``AutoModel``: no LM / classification head) and its tokenizer, in eval mode.

    Returns:
        ``(model, tokenizer)``. The model is fp32 on CPU (bf16 is 20-30x slower on CPUs without it).
    """
    device = device or default_device()
    tokenizer = load_tokenizer(name, padding_side=padding_side)
    dtype = torch.float32 if device == "cpu" else "auto"
    t0 = time.perf_counter()
    model = AutoModel.from_pretrained(resolve_model(name), dtype=dtype).to(device).eval()
    logger.info("Loaded backbone %s on %s in %.1f s", name, device, time.perf_counter() - t0)
    return model, tokenizer


def length_sorted_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int) -> Iterator[tuple]:
    """Tokenize once, then yield ``(row_indices, padded_batch)`` in descending length order.

    Sorting by length keeps padding (wasted compute) minimal; callers scatter results back with
    ``row_indices``. Longest first so an out-of-memory error shows up on the first batch, not the last.
    """
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        features = [{k: enc[k][i] for k in enc} for i in rows]
        yield rows, tokenizer.pad(features, return_tensors="pt")


def extract_embeddings(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    layers: Sequence[int],
    pooling: str | Sequence[str] = "mean",
    max_length: int = 128,
    batch_size: int = 16,
    show_progress: bool = True,
):
    """Pooled hidden states of ``layers`` for every text, from one forward pass per batch.

    ``pooling`` may be a list (e.g. ``["mean", "last"]``): the features are then a ``{pooling: tensor}`` dict, all
    from the same forward passes (a pooling ablation costs no second pass through the LLM).

    Args:
        model: A bare backbone (see :func:`load_backbone`); any model returning ``hidden_states``.
        tokenizer: Its tokenizer (must have a pad token; either padding side works).
        texts: Input texts.
        layers: Layer spec (see :func:`resolve_layers`).
        pooling: ``"mean"`` (masked mean) or ``"last"`` (last real token).
        max_length: Truncation length in tokens.
        batch_size: Texts per forward pass.
        show_progress: Show a tqdm bar.

    Returns:
        ``(features, n_tokens)``: a float32 tensor [N, len(layers), H] in the order of ``texts``, and the number
        of real tokens processed.
    """
    idx = resolve_layers(layers, model.config.num_hidden_layers)
    device = next(model.parameters()).device
    hidden_size = model.config.hidden_size
    poolings = [pooling] if isinstance(pooling, str) else list(pooling)
    outs = {p: torch.empty(len(texts), len(idx), hidden_size, dtype=torch.float32) for p in poolings}
    n_tokens = 0
    bar = tqdm(total=len(texts), desc="extract", unit="text", disable=not show_progress)
    params = forward_params(model)
    with torch.inference_mode():
        for rows, batch in length_sorted_batches(tokenizer, texts, max_length, batch_size):
            inputs = model_inputs(batch, device, params)
            hidden_states = model(**inputs, output_hidden_states=True).hidden_states
            if len(hidden_states) != model.config.num_hidden_layers + 1:  # layer indices would silently shift
                raise ValueError(
                    f"expected {model.config.num_hidden_layers + 1} hidden states (embeddings + layers), "
                    f"got {len(hidden_states)}"
                )
            mask = inputs["attention_mask"]
            for p, out in outs.items():
                out[torch.tensor(rows)] = torch.stack([pool_hidden(hidden_states[i], mask, p) for i in idx], 1).cpu()
            n_tokens += int(mask.sum())
            bar.update(len(rows))
    bar.close()
    return (outs[pooling] if isinstance(pooling, str) else outs), n_tokens


def bare_forward(model, tokenizer, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 16) -> int:
    """The same batches through the same model with no hidden states kept: the extraction speed ceiling.

    Returns:
        The number of real tokens processed.
    """
    device = next(model.parameters()).device
    n_tokens = 0
    params = forward_params(model)
    with torch.inference_mode():
        for _, batch in length_sorted_batches(tokenizer, texts, max_length, batch_size):
            inputs = model_inputs(batch, device, params)
            model(**inputs)
            n_tokens += int(inputs["attention_mask"].sum())
    return n_tokens


# ---------------------------------------------------------------------------------------------------------------
# Disk cache
# ---------------------------------------------------------------------------------------------------------------


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts (length-prefixed, so ``["ab", "c"]`` and ``["a", "bc"]`` differ)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def model_fingerprint(name: str) -> str:
    """The model reference plus, for a local checkpoint, a hash of its config and weight file sizes/mtimes.

    So a checkpoint re-saved at the same path (e.g. a re-built tiny test model) does not hit a stale cache.
    """
    path = Path(resolve_model(name))
    h = hashlib.sha256(str(name).encode())
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.suffix in (".json", ".safetensors", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cache_key(spec: ExtractionSpec, texts_fp: str) -> str:
    """Content key of one extraction: model, layers, pooling, max length, texts (batch size does not matter)."""
    payload = {
        "v": CACHE_FORMAT_VERSION,
        "model": model_fingerprint(spec.model),
        "layers": list(spec.layers),
        "pooling": spec.pooling,
        "max_length": spec.max_length,
        "texts": texts_fp,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _cache_path(cache_dir: str | os.PathLike, spec: ExtractionSpec, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(spec.model))[-40:]
    return Path(cache_dir) / f"{slug}-{key}.safetensors"


def get_or_extract(
    spec: ExtractionSpec,
    texts: Sequence[str],
    cache_dir: str | os.PathLike | None,
    *,
    device: str | None = None,
    backbone: tuple | None = None,
    show_progress: bool = True,
):
    """Features for ``texts`` from the disk cache, or extract (loading the model only then) and cache them.

    Args:
        spec: What to extract.
        texts: Input texts.
        cache_dir: Cache folder (``None`` disables caching).
        device: Torch device for extraction.
        backbone: An already loaded ``(model, tokenizer)``, or a zero-argument callable returning one (called
            only on a cache miss, so a fully cached run never loads the model); default :func:`load_backbone`.
        show_progress: tqdm bar during extraction.

    Returns:
        ``(features [N, len(layers), H], info)`` where ``info`` has ``cache_hit``, ``path``, ``n_texts``,
        ``n_tokens`` and the cost of the extraction that built the entry (``extract_wall_s``,
        ``extract_cpu_s``, ``load_wall_s``): on a hit these are the *original* costs, so reports can still
        charge a method for its features.
    """
    return get_or_extract_many(
        [spec], texts, cache_dir, device=device, backbone=backbone, show_progress=show_progress
    )[0]


def get_or_extract_many(
    specs: Sequence[ExtractionSpec],
    texts: Sequence[str],
    cache_dir: str | os.PathLike | None,
    *,
    device: str | None = None,
    backbone: tuple | None = None,
    show_progress: bool = True,
) -> list[tuple]:
    """:func:`get_or_extract` for specs that differ only in pooling: the cache misses share one extraction pass.

    Each entry is cached under its own spec and charged the whole pass (what it would cost alone).
    """
    if len({(s.model, tuple(s.layers), s.max_length, s.batch_size) for s in specs}) != 1:
        raise ValueError("get_or_extract_many: the specs may differ only in pooling")
    results: dict[int, tuple] = {}
    paths = {}
    for i, spec in enumerate(specs):
        if cache_dir is None:
            continue
        paths[i] = path = _cache_path(cache_dir, spec, cache_key(spec, texts_fingerprint(texts)))
        if path.exists():
            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads(fh.metadata()["info"])
            logger.info("Embedding cache hit: %s (%d texts)", path.name, len(texts))
            results[i] = (load_file(str(path))["features"], {**meta, "cache_hit": True, "path": str(path)})
    missing = [i for i in range(len(specs)) if i not in results]
    if not missing:
        return [results[i] for i in range(len(specs))]
    t0, c0 = time.perf_counter(), time.process_time()
    if backbone is None:
        backbone = load_backbone(specs[0].model, device=device)
    elif callable(backbone):
        backbone = backbone()
    load_wall = time.perf_counter() - t0
    t1, c1 = time.perf_counter(), time.process_time()
    spec0 = specs[missing[0]]
    feats, n_tokens = extract_embeddings(
        backbone[0], backbone[1], texts, layers=spec0.layers, pooling=[specs[i].pooling for i in missing],
        max_length=spec0.max_length, batch_size=spec0.batch_size, show_progress=show_progress,
    )  # fmt: skip
    cost = {
        "n_texts": len(texts),
        "n_tokens": n_tokens,
        "load_wall_s": load_wall,
        "load_cpu_s": c1 - c0,
        "extract_wall_s": time.perf_counter() - t1,
        "extract_cpu_s": time.process_time() - c1,
    }
    logger.info(
        "Extracted %s layers %s for %d texts (%d tokens) in %.1f s",
        spec0.model, spec0.layers, len(texts), n_tokens, cost["extract_wall_s"],
    )  # fmt: skip
    for i in missing:
        info = {"spec": asdict(specs[i]), **cost}
        feat = feats[specs[i].pooling]
        path = paths.get(i)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            save_file({"features": feat.contiguous()}, str(tmp), metadata={"info": json.dumps(info)})
            os.replace(tmp, path)  # atomic: a killed run never leaves a truncated entry under the real name
        results[i] = (feat, {**info, "cache_hit": False, "path": str(path) if path else None})
    return [results[i] for i in range(len(specs))]


def checkpoint_num_params(name: str) -> int | None:
    """Parameter count of a local safetensors checkpoint from its headers only (no weights loaded)."""
    files = sorted(Path(resolve_model(name)).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                shape = fh.get_slice(k).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def extract_sources(
    specs: Mapping[str, ExtractionSpec], splits: Sequence[Sequence[str]], cache_dir: str | os.PathLike | None
) -> tuple[dict[str, list], dict[str, list[dict]]]:
    """Features of every named spec on every split of texts, through the cache.

    Specs that differ only in pooling (e.g. the mean- and last-token-pooled views of one LLM) share one backbone
    load, made only on a cache miss, and one set of forward passes.

    Returns:
        ``({name: [features per split]}, {name: [info per split]})`` (see :func:`get_or_extract`).
    """
    groups: dict[tuple, list[str]] = {}
    for name, s in specs.items():
        groups.setdefault((s.model, tuple(s.layers), s.max_length, s.batch_size), []).append(name)
    feats, infos = {}, {}
    for names in groups.values():
        loaded: dict = {}

        def backbone(model: str = specs[names[0]].model, loaded: dict = loaded) -> tuple:
            if "bb" not in loaded:
                loaded["bb"] = load_backbone(model, padding_side="right")
            return loaded["bb"]

        parts = [
            get_or_extract_many([specs[n] for n in names], texts, cache_dir, backbone=backbone) for texts in splits
        ]
        for j, name in enumerate(names):
            feats[name], infos[name] = [p[j][0] for p in parts], [p[j][1] for p in parts]
    return feats, infos


def extraction_cost(infos: Sequence[Mapping]) -> dict:
    """``{"train": Cost, "test": Cost, "cached": bool}`` of one source's (train, validation, test) extractions.

    Training a head needs the train and validation features, predicting needs the test features; a cached entry
    is charged the extraction that built it.
    """
    costs = [Cost(i["extract_wall_s"], i["extract_cpu_s"]) for i in infos]
    return {"train": costs[0] + costs[1], "test": costs[2], "cached": all(i["cache_hit"] for i in infos)}
