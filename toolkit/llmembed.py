"""LLMEmbed: classify with pooled hidden states of a lightweight LLM instead of prompting it.

After "LLMEmbed: Rethinking Lightweight LLM's Genuine Function in Text Classification" (ACL 2024). The
pipeline is: run a small causal LM (and optionally sentence encoders) over the texts *once*, pool the hidden
states of several layers into one vector per (text, layer), cache them on disk, and train a small fusion +
MLP head on the cached features.

Two things the reference implementation got wrong are done right here:

* **Masked pooling.** The reference averaged every position, pads included, so a text's vector depended on
  the batch it was padded into. :func:`masked_mean_pool` averages only real tokens, and
  :func:`last_token_pool` finds the last real token for either padding side. Each model keeps its own
  position scheme under either padding side (:mod:`toolkit.backbone_inputs`).
* **Logits into the loss.** The reference applied ``softmax`` before ``CrossEntropyLoss`` (which applies
  log-softmax itself), squashing gradients. :class:`LLMEmbedHead` returns logits.

Efficiency: one forward pass yields every layer (``output_hidden_states=True``), the model is the bare
backbone (``AutoModel``: no LM head, whose vocab-sized matmul would dominate a 135M model), batches are
length-sorted to minimise padding (order is restored), and everything runs under ``torch.inference_mode``.
Features are cached as safetensors keyed by model, layers, pooling, max length and a hash of the texts;
a cache hit never loads the model. torch / transformers are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit.backbone_inputs import forward_params, model_inputs

logger = logging.getLogger(__name__)

POOLING_CHOICES = ("mean", "last")
VARIANTS = ("llmembed", "llm_only", "last_layer_only", "encoder_only", "llmembed_last_token")
# Rough power draw of one fully busy CPU core, used to turn CPU-seconds into an energy estimate. Server parts
# sit around 4-8 W per core at TDP (e.g. 250 W / 64 cores), desktop parts 10-15 W (125 W / 8 cores); 10 W is a
# middle-of-the-road figure. It is an estimate, not a measurement: override it for your hardware.
DEFAULT_WATTS_PER_CORE = 10.0
CACHE_FORMAT_VERSION = "2"  # 2: RoBERTa-family features keep their own positions


# ---------------------------------------------------------------------------------------------------------------
# Layer selection and pooling
# ---------------------------------------------------------------------------------------------------------------


def resolve_layers(layers: Sequence[int], num_hidden_layers: int) -> list[int]:
    """Map a layer spec to indices into ``outputs.hidden_states`` (0 = embeddings, ``L`` = last layer).

    Args:
        layers: Layer indices. Non-negative values index ``hidden_states`` directly (0 is the embedding
            output); negative values count from the last layer (``-1`` = last, ``[-5, ..., -1]`` = last 5).
            For Llama-family models transformers returns the last entry *after* the final RMSNorm (it equals
            ``last_hidden_state``), the others before any norm; the head standardizes each view anyway.
        num_hidden_layers: ``config.num_hidden_layers`` (``hidden_states`` has one more entry).

    Returns:
        The resolved indices, in the order given.

    Raises:
        ValueError: empty spec, out-of-range index, or the same layer named twice.
    """
    if not layers:
        raise ValueError("at least one layer is needed")
    n = num_hidden_layers + 1
    out = []
    for layer in layers:
        idx = layer + n if layer < 0 else layer
        if not 0 <= idx < n:
            raise ValueError(f"layer {layer} out of range for a model with {num_hidden_layers} layers")
        out.append(idx)
    if len(set(out)) != len(out):
        raise ValueError(f"layers {list(layers)} name the same layer twice (resolved {out})")
    return out


def masked_mean_pool(hidden, attention_mask):
    """Mean over real (mask = 1) positions only. ``hidden`` [B, T, H], mask [B, T] → [B, H] (float32).

    ``masked_fill`` rather than multiplying by the mask: attention over an all-pad row can produce NaN at pad
    positions, and ``NaN * 0`` is still NaN.
    """
    import torch

    mask = attention_mask.to(torch.bool).unsqueeze(-1)
    summed = hidden.float().masked_fill(~mask, 0.0).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1).to(summed.dtype)
    return summed / counts


def last_token_pool(hidden, attention_mask):
    """Hidden state of each row's last real token, for left *and* right padding. → [B, H] (float32)."""
    import torch

    mask = attention_mask.to(torch.long)
    t = mask.shape[1]
    # Position of the last 1 in each row: first 1 of the reversed mask, mapped back.
    last = (t - 1) - mask.flip(dims=[1]).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()


def pool_hidden(hidden, attention_mask, pooling: str):
    """Dispatch to :func:`masked_mean_pool` or :func:`last_token_pool`."""
    if pooling == "mean":
        return masked_mean_pool(hidden, attention_mask)
    if pooling == "last":
        return last_token_pool(hidden, attention_mask)
    raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {pooling!r}")


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
    import torch
    from transformers import AutoModel

    from toolkit.models import default_device, load_tokenizer, resolve_model

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
    import torch
    from tqdm.auto import tqdm

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
    import torch

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
    from toolkit.models import resolve_model

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
    from safetensors.torch import load_file, save_file

    if len({(s.model, tuple(s.layers), s.max_length, s.batch_size) for s in specs}) != 1:
        raise ValueError("get_or_extract_many: the specs may differ only in pooling")
    results: dict[int, tuple] = {}
    paths = {}
    for i, spec in enumerate(specs):
        if cache_dir is None:
            continue
        paths[i] = path = _cache_path(cache_dir, spec, cache_key(spec, texts_fingerprint(texts)))
        if path.exists():
            from safetensors import safe_open

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


# ---------------------------------------------------------------------------------------------------------------
# Cost accounting
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Cost:
    """Wall seconds and process CPU seconds (all threads) of a piece of work."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s)

    def energy_wh(self, watts_per_core: float = DEFAULT_WATTS_PER_CORE) -> float:
        """Energy estimate: CPU-seconds × watts per busy core, in watt-hours (CPU only; GPUs not counted)."""
        return self.cpu_s * watts_per_core / 3600.0


class CostMeter:
    """``with CostMeter() as m: ...`` then ``m.cost``: wall time and ``time.process_time`` CPU time."""

    def __enter__(self) -> CostMeter:
        self._t, self._c = time.perf_counter(), time.process_time()
        self.cost = Cost()
        return self

    def __exit__(self, *exc) -> None:
        self.cost = Cost(time.perf_counter() - self._t, time.process_time() - self._c)


# ---------------------------------------------------------------------------------------------------------------
# Views, fusion head, training
# ---------------------------------------------------------------------------------------------------------------


def select_views(features: dict, variant: str) -> tuple[list, list[int]]:
    """Pick the views (one [N, d] tensor each) and the mean group for an LLMEmbed variant or ablation.

    Args:
        features: ``{"llm": [N, L, H], "encoder": [N, 1, H'], "llm_last": [N, L, H]}`` (any may be missing;
            ``llm_last`` = last-token pooled LLM states).
        variant: ``llmembed`` (every LLM layer + encoder, mean over LLM layers), ``llm_only``,
            ``last_layer_only`` (last entry of the LLM layer list), ``encoder_only`` or ``llmembed_last_token``
            (``llmembed`` on ``llm_last``).

    Returns:
        ``(views, mean_group)``: the view tensors and the indices of the views averaged into the "layer mean".
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    llm, enc = features.get("llm"), features.get("encoder")
    if variant == "llmembed_last_token":  # the fused model on last-token instead of mean-pooled LLM states
        llm, variant = features.get("llm_last"), "llmembed"
    need_llm = variant != "encoder_only"
    need_enc = variant in ("llmembed", "encoder_only")
    if need_llm and llm is None:
        raise ValueError(f"variant {variant!r} needs LLM features")
    if need_enc and enc is None:
        raise ValueError(f"variant {variant!r} needs encoder features")
    if variant == "last_layer_only":
        return [llm[:, -1]], [0]
    if variant == "encoder_only":
        views = [enc[:, j] for j in range(enc.shape[1])]
        return views, list(range(len(views)))
    views = [llm[:, j] for j in range(llm.shape[1])]
    mean_group = list(range(len(views)))
    if variant == "llmembed":
        views += [enc[:, j] for j in range(enc.shape[1])]
    return views, mean_group


@dataclass
class HeadConfig:
    """Shape of an :class:`LLMEmbedHead`; saved next to its weights."""

    view_dims: list[int]
    mean_group: list[int]
    num_labels: int
    proj_dim: int = 256
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 256])
    sigma: float = 1.0
    dropout: float = 0.2
    label_names: list[str] | None = None


def _build_head_class():
    import torch
    from torch import nn

    class LLMEmbedHead(nn.Module):
        """Per-view standardize → project → co-occurrence pooling ⊕ view mean → MLP → logits.

        * Standardization (train-set mean/std, stored as buffers so the saved head is self-contained): LLM hidden
          states have a few "massive activation" dimensions in the hundreds that would otherwise dominate.
        * Each view is projected to ``proj_dim`` (Linear + ReLU + Dropout).
        * Co-occurrence pooling: pairwise inner products of the projected views (upper triangle incl. the
          diagonal: the matrix is symmetric), scaled by ``1/sqrt(proj_dim)`` so they stay O(1), through
          ``2·sigmoid(σx) − 1`` as in the paper.
        * Concatenated with the mean of the standardized ``mean_group`` views (the paper's LLM layer mean).
        * MLP ``hidden_dims`` (paper: 1024 → 256) → ``num_labels`` logits. No softmax: CrossEntropyLoss wants
          logits (the reference's softmax-then-CE bug).
        """

        def __init__(self, config: HeadConfig):
            super().__init__()
            self.config = config
            dims = config.view_dims
            if not dims:
                raise ValueError("at least one view is needed")
            if not config.mean_group or len({dims[i] for i in config.mean_group}) != 1:
                raise ValueError(f"mean_group {config.mean_group} must name views of one dim (view dims {dims})")
            for i, d in enumerate(dims):
                self.register_buffer(f"mu_{i}", torch.zeros(d))
                self.register_buffer(f"sd_{i}", torch.ones(d))
            self.proj = nn.ModuleList(
                nn.Sequential(nn.Linear(d, config.proj_dim), nn.ReLU(), nn.Dropout(config.dropout)) for d in dims
            )
            v = len(dims)
            self.register_buffer("triu", torch.triu_indices(v, v), persistent=False)
            in_dim = v * (v + 1) // 2 + dims[config.mean_group[0]]
            layers: list[nn.Module] = []
            for h in config.hidden_dims:
                layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(config.dropout)]
                in_dim = h
            layers.append(nn.Linear(in_dim, config.num_labels))
            self.mlp = nn.Sequential(*layers)

        @torch.no_grad()
        def fit_standardizer(self, views) -> None:
            """Set the per-view mean/std from training views (call once, before training)."""
            for i, x in enumerate(views):
                getattr(self, f"mu_{i}").copy_(x.float().mean(0))
                getattr(self, f"sd_{i}").copy_(x.float().std(0).clamp(min=1e-6))

        def forward(self, views):
            z = [(x - getattr(self, f"mu_{i}")) / getattr(self, f"sd_{i}") for i, x in enumerate(views)]
            proj = torch.stack([p(x) for p, x in zip(self.proj, z)], dim=1)  # [B, V, P]
            gram = proj @ proj.transpose(1, 2) / proj.shape[-1] ** 0.5  # [B, V, V]
            co = 2 * torch.sigmoid(self.config.sigma * gram[:, self.triu[0], self.triu[1]]) - 1
            mean = torch.stack([z[i] for i in self.config.mean_group], dim=0).mean(0)
            return self.mlp(torch.cat([co, mean], dim=-1))

    return LLMEmbedHead


_HEAD_CLS = None


def make_head(config: HeadConfig):
    """Instantiate an ``LLMEmbedHead`` (the class is built lazily so importing this module needs no torch)."""
    global _HEAD_CLS
    if _HEAD_CLS is None:
        _HEAD_CLS = _build_head_class()
    return _HEAD_CLS(config)


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def checkpoint_num_params(name: str) -> int | None:
    """Parameter count of a local safetensors checkpoint from its headers only (no weights loaded)."""
    from safetensors import safe_open

    from toolkit.models import resolve_model

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


def predict_logits(head, views, batch_size: int = 512):
    """Logits [N, C] for views (eval mode, no grad)."""
    import torch

    head.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, views[0].shape[0], batch_size):
            out.append(head([v[s : s + batch_size] for v in views]))
    return torch.cat(out)


def train_head(
    head,
    train_views,
    train_labels,
    val_views,
    val_labels,
    *,
    epochs: int = 100,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    patience: int = 10,
    seed: int = 42,
) -> dict[str, Any]:
    """Train the head with AdamW + cross-entropy on logits; early-stop on validation accuracy (ties: val loss).

    The best epoch's weights are restored at the end. Shuffling uses a seeded generator, so a run is
    reproducible given the seed (CPU).

    Returns:
        ``{"best_epoch", "epochs_run", "best_val_accuracy", "history": [{"epoch", "train_loss", "val_loss",
        "val_accuracy"}]}``.
    """
    import copy

    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)  # head init happened before; this seeds dropout
    gen = torch.Generator().manual_seed(seed)
    y_train = torch.as_tensor(train_labels, dtype=torch.long)
    y_val = torch.as_tensor(val_labels, dtype=torch.long)
    head.fit_standardizer(train_views)
    opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    n = len(y_train)
    best = (-1.0, float("inf"))
    best_state, best_epoch, bad, history = copy.deepcopy(head.state_dict()), 0, 0, []
    for epoch in range(1, epochs + 1):
        head.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(0, n, batch_size):
            idx = perm[s : s + batch_size]
            loss = F.cross_entropy(head([v[idx] for v in train_views]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        logits = predict_logits(head, val_views)
        val_loss = float(F.cross_entropy(logits, y_val))
        val_acc = float((logits.argmax(-1) == y_val).float().mean())
        history.append({"epoch": epoch, "train_loss": total / n, "val_loss": val_loss, "val_accuracy": val_acc})
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best, best_epoch, bad = (val_acc, val_loss), epoch, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            bad += 1
            if bad >= patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    logger.info("Head trained: best epoch %d/%d, val accuracy %.4f", best_epoch, len(history), best[0])
    return {"best_epoch": best_epoch, "epochs_run": len(history), "best_val_accuracy": best[0], "history": history}


def save_head(head, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``head_config.json`` (+ ``extra``, e.g. the extraction specs)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    payload = {"head": asdict(head.config), **(extra or {})}
    (folder / "head_config.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return folder


def load_head(folder: str | os.PathLike):
    """Inverse of :func:`save_head`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    payload = json.loads((folder / "head_config.json").read_text(encoding="utf-8"))
    head = make_head(HeadConfig(**payload["head"]))
    head.load_state_dict(load_file(str(folder / "model.safetensors")))
    return head.eval()


# ---------------------------------------------------------------------------------------------------------------
# Few-shot prompt-classifier baseline (same LLM, prompted)
# ---------------------------------------------------------------------------------------------------------------


def build_few_shot_messages(
    text: str, demos: Sequence[tuple[str, str]], label_names: Sequence[str], max_chars: int = 400
) -> list[dict[str, str]]:
    """Chat messages: instruction listing the labels, demos as user/assistant turns, then the query."""

    def clip(t: str) -> str:
        t = " ".join(t.split())
        return t if len(t) <= max_chars else t[:max_chars] + " ..."

    system = (
        "Classify the text into exactly one of these labels: "
        + ", ".join(label_names)
        + ". Answer with the label only."
    )
    messages = [{"role": "system", "content": system}]
    for demo_text, demo_label in demos:
        messages += [{"role": "user", "content": f"Text: {clip(demo_text)}\nLabel:"}]
        messages += [{"role": "assistant", "content": demo_label}]
    messages.append({"role": "user", "content": f"Text: {clip(text)}\nLabel:"})
    return messages


def parse_label(output: str, label_names: Sequence[str]) -> str | None:
    """Map a generated answer to a label name, or ``None`` when it names none (or is ambiguous).

    Exact match (case/punctuation-insensitive) first; otherwise the label mentioned earliest as a whole word,
    provided no other label starts at the same place.
    """
    norm = re.sub(r"[^\w/&+-]+", " ", output.lower()).strip()
    names = {n.lower(): n for n in label_names}
    if norm in names:
        return names[norm]
    hits = []
    for low, name in names.items():
        m = re.search(rf"(?<![\w/]){re.escape(low)}(?![\w/])", norm)
        if m:
            hits.append((m.start(), -len(low), name))
    if not hits:
        return None
    hits.sort()
    if len(hits) > 1 and hits[0][:2] == hits[1][:2]:
        return None
    return hits[0][2]


def pick_demos(texts: Sequence[str], labels: Sequence[str], label_names: Sequence[str], per_class: int, seed: int):
    """``per_class`` seeded random demos per label, interleaved by class (so no label is always last)."""
    import random

    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {n: [] for n in label_names}
    for t, y in zip(texts, labels):
        by_label[y].append(t)
    picked = {n: rng.sample(ts, min(per_class, len(ts))) for n, ts in by_label.items()}
    demos = [(picked[n][k], n) for k in range(per_class) for n in label_names if k < len(picked[n])]
    rng.shuffle(demos)
    return demos


def few_shot_classify(
    teacher,
    demos: Sequence[tuple[str, str]],
    texts: Sequence[str],
    label_names: Sequence[str],
    *,
    max_new_tokens: int = 8,
    max_chars: int = 400,
) -> tuple[list[str | None], list[str]]:
    """Greedy few-shot classification through a :class:`toolkit.teachers.Teacher`.

    Returns:
        ``(predictions, raw_outputs)``; a prediction is ``None`` when the output names no label (invalid).
    """
    from toolkit.teachers import GenerationRequest

    requests = [
        GenerationRequest(
            messages=build_few_shot_messages(t, demos, label_names, max_chars=max_chars),
            n=1,
            temperature=0.0,
            max_tokens=max_new_tokens,
        )
        for t in texts
    ]
    outputs = [gens[0].text for gens in teacher.generate(requests)]
    return [parse_label(o, label_names) for o in outputs], outputs
