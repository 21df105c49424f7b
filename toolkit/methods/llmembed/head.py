"""LLMEmbed: classify with pooled hidden states of a lightweight LLM instead of prompting it.

After "LLMEmbed: Rethinking Lightweight LLM's Genuine Function in Text Classification" (Liu et al., ACL 2024).
Hidden states of several layers of a frozen small causal LM (and optionally a sentence encoder) are pooled into
one vector per (text, layer) (:mod:`toolkit.methods.llmembed.embeddings` extracts them,
:mod:`toolkit.methods.llmembed.feature_cache` caches them); a small fusion + MLP head (:class:`LLMEmbedHead`) is
trained on those views. This module holds the paper's method: layer selection, pooling, the views of each
variant / ablation, the head, its training loop and its save / load.

Two things the reference implementation got wrong are done right here:

* **Masked pooling.** The reference averaged every position, pads included, so a text's vector depended on
  the batch it was padded into. :func:`masked_mean_pool` averages only real tokens, and
  :func:`last_token_pool` finds the last real token for either padding side.
* **Logits into the loss.** The reference applied ``softmax`` before ``CrossEntropyLoss`` (which applies
  log-softmax itself), squashing gradients. :class:`LLMEmbedHead` returns logits.

The reference's head itself, that bug included, is kept as an ablation: :class:`OfficialLLMEmbedHead` (variant
``llmembed_official_head``), trained by the same loop on the same views, so that row differs from ``llmembed`` in
the head alone.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from toolkit.meter import Meter
from toolkit.methods.llmembed.config import VARIANTS, LLMEmbedConfig
from toolkit.methods.llmembed.pooling import (  # noqa: F401 - re-exported: callers import them from here
    last_token_pool,
    masked_mean_pool,
    pool_hidden,
    resolve_layers,
)

logger = logging.getLogger(__name__)

#: Variants whose head is :class:`OfficialLLMEmbedHead`; every other variant uses :class:`LLMEmbedHead`.
OFFICIAL_HEAD_VARIANTS = ("llmembed_official_head",)
#: The official head's dropout, hard-coded there in the projections and the MLP alike.
OFFICIAL_DROPOUT = 0.5


# ---------------------------------------------------------------------------------------------------------------
# Views, fusion head, training
# ---------------------------------------------------------------------------------------------------------------


def select_views(features: dict, variant: str) -> tuple[list, list[int]]:
    """Pick the views (one [N, d] tensor each) and the mean group for an LLMEmbed variant or ablation.

    Args:
        features: ``{"llm": [N, L, H], "encoder": [N, 1, H'], "llm_last": [N, L, H]}`` (any may be missing;
            ``llm_last`` = last-token pooled LLM states).
        variant: ``llmembed`` (every LLM layer + encoder, mean over LLM layers), ``llm_only``,
            ``last_layer_only`` (last entry of the LLM layer list), ``encoder_only``, ``llmembed_last_token``
            (``llmembed`` on ``llm_last``) or ``llmembed_official_head`` (``llmembed``'s views; only the head differs).

    Returns:
        ``(views, mean_group)``: the view tensors and the indices of the views averaged into the "layer mean".
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    llm, enc = features.get("llm"), features.get("encoder")
    kind = variant  # the view layout; errors name the variant asked for
    if variant == "llmembed_last_token":  # the fused model on last-token instead of mean-pooled LLM states
        llm, kind = features.get("llm_last"), "llmembed"
    elif variant in OFFICIAL_HEAD_VARIANTS:  # the fused views; only the head differs
        kind = "llmembed"
    if kind != "encoder_only" and llm is None:
        raise ValueError(f"variant {variant!r} needs LLM features")
    if kind in ("llmembed", "encoder_only") and enc is None:
        raise ValueError(f"variant {variant!r} needs encoder features")
    if kind == "last_layer_only":
        return [llm[:, -1]], [0]
    if kind == "encoder_only":
        views = [enc[:, j] for j in range(enc.shape[1])]
        return views, list(range(len(views)))
    views = [llm[:, j] for j in range(llm.shape[1])]
    mean_group = list(range(len(views)))
    if kind == "llmembed":
        views += [enc[:, j] for j in range(enc.shape[1])]
    return views, mean_group


@dataclass
class HeadConfig:
    """Shape of a fusion head; saved next to its weights.

    ``style`` picks the head (:func:`build_head`): ``toolkit`` (:class:`LLMEmbedHead`) or ``official``
    (:class:`OfficialLLMEmbedHead`). It defaults to ``toolkit`` so a ``head_config.json`` saved before the field
    existed still loads as the head it was.
    """

    view_dims: list[int]
    mean_group: list[int]
    num_labels: int
    proj_dim: int = 256
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 256])
    sigma: float = 1.0
    dropout: float = 0.2
    label_names: list[str] | None = None
    style: str = "toolkit"


def _check_views(config: HeadConfig) -> None:
    """Refuse a head without views, or whose mean group is empty or mixes widths (the views cannot be averaged)."""
    dims = config.view_dims
    if not dims:
        raise ValueError("at least one view is needed")
    if not config.mean_group or len({dims[i] for i in config.mean_group}) != 1:
        raise ValueError(f"mean_group {config.mean_group} must name views of one dim (view dims {dims})")


def _mlp(in_dim: int, config: HeadConfig) -> nn.Sequential:
    """``hidden_dims`` blocks of Linear + ReLU + Dropout, then a Linear to ``num_labels``."""
    layers: list[nn.Module] = []
    for hidden in config.hidden_dims:
        layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, config.num_labels))
    return nn.Sequential(*layers)


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
        _check_views(config)
        self.config = config
        dims = config.view_dims
        for index, dim in enumerate(dims):
            self.register_buffer(f"mu_{index}", torch.zeros(dim))
            self.register_buffer(f"sd_{index}", torch.ones(dim))
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, config.proj_dim), nn.ReLU(), nn.Dropout(config.dropout)) for dim in dims
        )
        n_views = len(dims)
        self.register_buffer("triu", torch.triu_indices(n_views, n_views), persistent=False)
        self.mlp = _mlp(n_views * (n_views + 1) // 2 + dims[config.mean_group[0]], config)

    @torch.no_grad()
    def fit_standardizer(self, views) -> None:
        """Set the per-view mean/std from training views (call once, before training)."""
        for index, view in enumerate(views):
            getattr(self, f"mu_{index}").copy_(view.float().mean(0))
            getattr(self, f"sd_{index}").copy_(view.float().std(0).clamp(min=1e-6))

    def forward(self, views):
        standardized = [(x - getattr(self, f"mu_{i}")) / getattr(self, f"sd_{i}") for i, x in enumerate(views)]
        proj = torch.stack([p(x) for p, x in zip(self.proj, standardized)], dim=1)  # [B, V, P]
        gram = proj @ proj.transpose(1, 2) / proj.shape[-1] ** 0.5  # [B, V, V]
        co = 2 * torch.sigmoid(self.config.sigma * gram[:, self.triu[0], self.triu[1]]) - 1
        mean = torch.stack([standardized[i] for i in self.config.mean_group], dim=0).mean(0)
        return self.mlp(torch.cat([co, mean], dim=-1))


class OfficialLLMEmbedHead(nn.Module):
    """The official code's head (``DownstreamModel``), its softmax bug included, on any backbones: an ablation.

    * The ``mean_group`` views (the LLM layers) are projected to ``proj_dim`` (Linear + ReLU + Dropout); the other
      views (the encoders) enter raw, so they must be ``proj_dim`` wide. The official code projects Llama-2's
      4096-d layers to the 1024 of BERT-large / RoBERTa-large; :func:`fit_variant` projects to the encoder's width.
    * No standardization: every view enters as extracted.
    * The full ``V×V`` gram matrix of the stacked views (both triangles, unscaled) → ``2·sigmoid(σx) − 1``.
    * Concatenated with the raw mean of the ``mean_group`` views → MLP ``hidden_dims`` → **softmax**. The
      probabilities go into :func:`train_head`'s cross-entropy, which applies log-softmax again: the official
      softmax-then-``CrossEntropyLoss`` bug, kept so that the row is the official head.

    Only the head is official: it trains in :func:`train_head` like every variant (AdamW, early stopping on
    validation, ``epochs``), not with the official Adam 1e-4, batch 1024 and fixed epochs, so the row differs from
    ``llmembed`` in the head alone.
    """

    def __init__(self, config: HeadConfig):
        super().__init__()
        _check_views(config)
        raw = [dim for index, dim in enumerate(config.view_dims) if index not in config.mean_group]
        if not raw:
            raise ValueError("the official head needs an encoder view: a view outside mean_group, entered raw")
        if set(raw) != {config.proj_dim}:
            raise ValueError(f"the raw (encoder) views {raw} must be proj_dim={config.proj_dim} wide to join the gram")
        self.config = config
        width = config.view_dims[config.mean_group[0]]
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(width, config.proj_dim), nn.ReLU(), nn.Dropout(config.dropout))
            for _ in config.mean_group
        )
        self.mlp = _mlp(len(config.view_dims) ** 2 + width, config)

    def fit_standardizer(self, views) -> None:
        """Nothing to fit: the official head reads the views raw (:func:`train_head` calls this on every head)."""

    def forward(self, views):
        stacked = list(views)
        for projection, index in zip(self.proj, self.config.mean_group):
            stacked[index] = projection(views[index])
        stacked = torch.stack(stacked, dim=1)  # [B, V, P]
        gram = (stacked @ stacked.transpose(1, 2)).flatten(1)  # [B, V*V]: both triangles, unscaled
        co = 2 * torch.sigmoid(self.config.sigma * gram) - 1
        mean = torch.stack([views[i] for i in self.config.mean_group], dim=0).mean(0)
        return torch.softmax(self.mlp(torch.cat([co, mean], dim=-1)), dim=-1)


#: The head class of each ``HeadConfig.style``.
HEADS = {"toolkit": LLMEmbedHead, "official": OfficialLLMEmbedHead}


def build_head(config: HeadConfig) -> nn.Module:
    """The head ``config.style`` names (see :data:`HEADS`).

    Raises:
        ValueError: unknown style.
    """
    if config.style not in HEADS:
        raise ValueError(f"head style must be one of {tuple(HEADS)}, got {config.style!r}")
    return HEADS[config.style](config)


def predict_logits(head, views, batch_size: int = 512):
    """The head's outputs [N, C] for views (eval mode, no grad): logits, or the official head's probabilities.

    Either way their argmax is the predicted label.
    """
    head.eval()
    logits = []
    with torch.inference_mode():
        for start in range(0, views[0].shape[0], batch_size):
            logits.append(head([view[start : start + batch_size] for view in views]))
    return torch.cat(logits)


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
    """Train the head with AdamW + cross-entropy on its outputs; early-stop on validation accuracy (ties: val loss).

    The outputs are logits, except :class:`OfficialLLMEmbedHead`'s probabilities (the official bug, kept there).

    The best epoch's weights are restored at the end. Shuffling uses a seeded generator, so a run is
    reproducible given the seed (CPU).

    Returns:
        ``{"best_epoch", "epochs_run", "best_val_accuracy", "history": [{"epoch", "train_loss", "val_loss",
        "val_accuracy"}]}``.
    """
    torch.manual_seed(seed)  # head init happened before; this seeds dropout
    generator = torch.Generator().manual_seed(seed)
    y_train = torch.as_tensor(train_labels, dtype=torch.long)
    y_val = torch.as_tensor(val_labels, dtype=torch.long)
    head.fit_standardizer(train_views)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    n_train = len(y_train)
    best = (-1.0, float("inf"))
    best_state = copy.deepcopy(head.state_dict())
    best_epoch = 0
    epochs_without_gain = 0
    history = []
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for start in range(0, n_train, batch_size):
            rows = order[start : start + batch_size]
            loss = F.cross_entropy(head([view[rows] for view in train_views]), y_train[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        logits = predict_logits(head, val_views)
        val_loss = float(F.cross_entropy(logits, y_val))
        val_acc = float((logits.argmax(-1) == y_val).float().mean())
        history.append({"epoch": epoch, "train_loss": total / n_train, "val_loss": val_loss, "val_accuracy": val_acc})
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best = (val_acc, val_loss)
            best_epoch = epoch
            epochs_without_gain = 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= patience:
                break
    head.load_state_dict(best_state)
    head.eval()
    logger.info("Head trained: best epoch %d/%d, val accuracy %.4f", best_epoch, len(history), best[0])
    return {"best_epoch": best_epoch, "epochs_run": len(history), "best_val_accuracy": best[0], "history": history}


def save_head(head, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``head_config.json`` (+ ``extra``, e.g. the extraction specs)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    payload = {"head": asdict(head.config), **(extra or {})}
    (folder / "head_config.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return folder


def load_head(folder: str | os.PathLike):
    """Inverse of :func:`save_head`."""
    folder = Path(folder)
    payload = json.loads((folder / "head_config.json").read_text(encoding="utf-8"))
    head = build_head(HeadConfig(**payload["head"]))
    head.load_state_dict(load_file(str(folder / "model.safetensors")))
    return head.eval()


def variant_head_config(
    variant: str, view_dims: list[int], mean_group: list[int], label_names, config: LLMEmbedConfig
) -> HeadConfig:
    """The :class:`HeadConfig` of ``variant``'s head on views of ``view_dims`` (``mean_group``: the LLM layers).

    Most variants take the config's ``proj_dim`` and ``dropout``. The official head (:data:`OFFICIAL_HEAD_VARIANTS`)
    projects the LLM layers to the encoder's width, as the official code projects Llama-2's to BERT-large's, and
    uses the official dropout :data:`OFFICIAL_DROPOUT`; ``hidden_dims`` and ``sigma`` are the config's for both.

    Raises:
        ValueError: the official head without an encoder view.
    """
    style, proj_dim, dropout = "toolkit", config.proj_dim, config.dropout
    if variant in OFFICIAL_HEAD_VARIANTS:
        encoder_dims = [dim for index, dim in enumerate(view_dims) if index not in mean_group]
        if not encoder_dims:
            raise ValueError(f"variant {variant!r} needs an encoder view: its LLM layers are projected to its width")
        style, proj_dim, dropout = "official", encoder_dims[0], OFFICIAL_DROPOUT
    return HeadConfig(
        view_dims=list(view_dims),
        mean_group=list(mean_group),
        num_labels=len(label_names),
        proj_dim=proj_dim,
        hidden_dims=list(config.hidden_dims),
        sigma=config.sigma,
        dropout=dropout,
        label_names=list(label_names),
        style=style,
    )


def fit_variant(
    variant: str, features: Sequence[dict], train_labels, val_labels, label_names, config: LLMEmbedConfig, seed: int
) -> dict[str, Any]:
    """Train one head for ``variant`` on the (train, validation, test) features, then predict the test rows.

    Args:
        variant: One of :data:`~toolkit.methods.llmembed.config.VARIANTS`.
        features: Per split (train, validation, test), the ``features`` of :func:`select_views`.
        train_labels: Label ids of the training rows.
        val_labels: Label ids of the validation rows (early stopping).
        label_names: Label names (saved in the head's config).
        config: The head's shape (``proj_dim``, ``hidden_dims``, ``sigma``, ``dropout``; see
            :func:`variant_head_config` for the official head) and training (``epochs``, ``learning_rate``,
            ``weight_decay``, ``batch_size``, ``patience``), the same for every variant.
        seed: Seeds the head's init, dropout and shuffling.

    Returns:
        ``{"head", "fit" (see :func:`train_head`), "predictions" (test label ids), "train_cost", "infer_cost"}``;
        the costs are the head's own (feature extraction not included).
    """
    (train_views, mean_group), (val_views, _), (test_views, _) = [select_views(f, variant) for f in features]
    view_dims = [view.shape[1] for view in train_views]
    torch.manual_seed(seed)
    head = build_head(variant_head_config(variant, view_dims, mean_group, label_names, config))
    with Meter() as train_meter:
        fit = train_head(
            head,
            train_views,
            train_labels,
            val_views,
            val_labels,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            batch_size=config.batch_size,
            patience=config.patience,
            seed=seed,
        )
    with Meter() as infer_meter:
        predictions = predict_logits(head, test_views).argmax(-1).tolist()
    return {
        "head": head,
        "fit": fit,
        "predictions": predictions,
        "train_cost": train_meter.cost,
        "infer_cost": infer_meter.cost,
    }


def head_log_history(history: Sequence[dict]) -> list[dict]:
    """:func:`train_head`'s history as a Trainer-style ``log_history`` (step = epoch), for the training curves."""
    return [
        {
            "step": entry["epoch"],
            "epoch": entry["epoch"],
            "loss": entry["train_loss"],
            "eval_loss": entry["val_loss"],
            "eval_accuracy": entry["val_accuracy"],
        }
        for entry in history
    ]
