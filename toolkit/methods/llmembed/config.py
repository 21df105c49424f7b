"""The knobs of LLMEmbed: which backbones and layers feed the head, how they are pooled, and the head's training.

:class:`LLMEmbedConfig` is the method's one configuration object, used the way TRL pairs a trainer with its config:
the recipe parses it straight from the command line / YAML (its field names are the recipe's flags), and every
library function of :mod:`toolkit.methods.llmembed` takes it (or plain values), never a recipe's argument object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

POOLING_CHOICES = ("mean", "last")
VARIANTS = (
    "llmembed",
    "llm_only",
    "last_layer_only",
    "encoder_only",
    "llmembed_last_token",
    "llmembed_official_head",
)
#: The feature sources (keys of ``toolkit.methods.llmembed.head.select_views``'s ``features``) each variant reads.
VARIANT_SOURCES = {
    "llmembed": ("llm", "encoder"),
    "llm_only": ("llm",),
    "last_layer_only": ("llm",),
    "encoder_only": ("encoder",),
    "llmembed_last_token": ("llm_last", "encoder"),
    "llmembed_official_head": ("llm", "encoder"),  # the fused views through the official code's head
}


@dataclass
class LLMEmbedConfig:
    """Backbones, layers, pooling and fusion head of LLMEmbed (Liu et al., ACL 2024), and how the head trains.

    The lists given are copied, so a caller's list is never shared with (or changed through) a config.
    """

    llm_model: str = field(default="local:smollm2-135m", metadata={"help": "Causal LM backbone."})
    llm_layers: list[int] = field(
        default_factory=lambda: [-5, -4, -3, -2, -1], metadata={"help": "LLM layers to pool; < 0 counts from last."}
    )
    llm_pooling: str = field(default="mean", metadata={"help": f"LLM pooling, one of {POOLING_CHOICES}."})
    encoder_model: str | None = field(default="local:minilm-l6", metadata={"help": "Sentence encoder view."})
    encoder_pooling: str = field(default="mean", metadata={"help": f"Encoder pooling, one of {POOLING_CHOICES}."})
    max_length: int = field(default=128, metadata={"help": "Truncation length (tokens) for every model."})
    extract_batch_size: int = field(default=16, metadata={"help": "Texts per extraction forward pass."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Embedding cache (default $TOOLKIT_CACHE/llmembed); shared by every node."}
    )
    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"help": f"Heads to train, of {VARIANTS}."}
    )
    proj_dim: int = field(default=256, metadata={"help": "Per-view projection size."})
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 256], metadata={"help": "MLP hidden sizes."})
    sigma: float = field(default=1.0, metadata={"help": "Co-occurrence scale: 2*sigmoid(sigma*x)-1."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout in projections and MLP."})
    epochs: int = field(default=100, metadata={"help": "Max head epochs (early stopping on validation)."})
    patience: int = field(default=10, metadata={"help": "Epochs without validation gain before stopping."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay of the head."})
    batch_size: int = field(default=64, metadata={"help": "Head training batch size."})

    def __post_init__(self) -> None:
        self.llm_layers = list(self.llm_layers)
        self.variants = list(self.variants)
        self.hidden_dims = list(self.hidden_dims)
        self._check_sources()
        self._check_sizes()

    def _check_sources(self) -> None:
        if not self.variants:
            raise ValueError(f"name at least one variant of {VARIANTS}")
        if unknown := [v for v in self.variants if v not in VARIANTS]:
            raise ValueError(f"unknown variants {unknown}; expected {VARIANTS}")
        if not self.encoder_model and (needy := [v for v in self.variants if "encoder" in VARIANT_SOURCES[v]]):
            raise ValueError(f"variants {needy} need encoder_model")
        if bad := {self.llm_pooling, self.encoder_pooling} - set(POOLING_CHOICES):
            raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {sorted(bad)}")
        if not self.llm_layers:
            raise ValueError("llm_layers must name at least one layer")
        if len(set(self.llm_layers)) != len(self.llm_layers):
            raise ValueError(f"llm_layers names a layer twice: {self.llm_layers}")

    def _check_sizes(self) -> None:
        positive = {
            "max_length": self.max_length,
            "extract_batch_size": self.extract_batch_size,
            "proj_dim": self.proj_dim,
            "epochs": self.epochs,
            "patience": self.patience,
            "batch_size": self.batch_size,
        }
        if small := [name for name, value in positive.items() if value < 1]:
            raise ValueError(f"{', '.join(small)} must be >= 1")
        if any(size < 1 for size in self.hidden_dims):
            raise ValueError(f"hidden_dims must be >= 1, got {self.hidden_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0")

    def uses_encoder(self) -> bool:
        """True when some variant reads the encoder's features."""
        return any("encoder" in VARIANT_SOURCES[v] for v in self.variants)
