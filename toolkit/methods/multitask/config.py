"""The knobs of the multi-task method: the task mixture, the student and its adapter, decoding, the baselines.

The recipe builds one :class:`MultitaskConfig` from its arguments; the library reads only this object (and TRL's
``SFTConfig`` for the optimisation), never the recipe's argument dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.methods.multitask.data import parse_task_spec
from toolkit.methods.multitask.mixture import MIXTURE_STRATEGIES
from toolkit.training.budget import BASELINE_BUDGETS

BASELINES = ("single_task", "encoder")
EVAL_SPLITS = ("test", "dev")
LABEL_DECODINGS = ("constrained", "free")

__all__ = ["BASELINES", "EVAL_SPLITS", "LABEL_DECODINGS", "MultitaskConfig"]


@dataclass
class MultitaskConfig:
    """One multi-task run: which tasks in which mixture, which student, how answers are decoded, which baselines.

    Validated on construction; list fields are copied, so the caller's lists are never changed.
    """

    tasks: list[str] = field(
        default_factory=lambda: ["20ng:topic", "snips:intent_slots"],
        metadata={"help": "Mixture entries '<source>:<task>'; task in topic/intent/slots/intent_slots."},
    )
    task_weights: list[float] | None = field(default=None, metadata={"help": "One weight per task (default 1 each)."})
    mixture_strategy: str = field(default="weighted", metadata={"help": "weighted | proportional | temperature."})
    mixture_temperature: float = field(default=1.0, metadata={"help": "T for temperature sampling."})

    train_size: int = field(default=300, metadata={"help": "Train rows per task (subsample, -1 = all)."})
    test_size: int = field(default=200, metadata={"help": "Test rows per task (subsample, -1 = all)."})
    test_path: list[str] | None = field(default=None, metadata={"help": "One test file per task ('-' = default)."})
    dev_path: list[str] | None = field(default=None, metadata={"help": "One dev file per task ('-' = default)."})
    eval_split: str = field(default="test", metadata={"help": "Split every model is scored on: test | dev."})
    dev_curve_rows: int = field(default=0, metadata={"help": "Dev rows per task for the dev-loss curve (0 = none)."})
    max_text_tokens: int = field(default=128, metadata={"help": "Truncate topic texts to this many LM tokens."})
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default $TOOLKIT_DATA_DIR)."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the carved splits and subsamples (not --seed)."})

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "The causal LM student."})
    quantization: bool = field(default=True, metadata={"help": "4-bit NF4 + double quant (QLoRA); false = LoRA."})
    bnb_4bit_quant_storage: str | None = field(
        default=None, metadata={"help": "Storage dtype of the 4-bit weights (default: the compute dtype)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={"help": "LoRA targets."})

    max_listed_labels: int = field(
        default=10, metadata={"help": "List the label set in the prompt when it has at most this many labels."}
    )
    label_decoding: str = field(default="constrained", metadata={"help": "constrained (label trie) | free (greedy)."})
    max_new_tokens: int = field(default=48, metadata={"help": "Generation budget per answer."})
    eval_batch_size: int = field(default=16, metadata={"help": "Generation batch size."})

    baselines: list[str] = field(
        default_factory=lambda: list(BASELINES), metadata={"help": "Any of: single_task, encoder (or none)."}
    )
    baseline_budget: str = field(default="per_model", metadata={"help": f"One of {', '.join(BASELINE_BUDGETS)}."})
    encoder_model: str = field(default="local:minilm-l6", metadata={"help": "Encoder baseline checkpoint."})
    encoder_learning_rate: float = field(default=1e-4, metadata={"help": "Encoder baseline learning rate."})

    def __post_init__(self):
        self.tasks = list(self.tasks)
        self.baselines = [name for name in self.baselines if name != "none"]  # `--baselines none` = no baselines
        self.lora_target_modules = list(self.lora_target_modules)
        self._check_tasks()
        self._check_choices()
        self._check_sizes()

    def _check_tasks(self) -> None:
        if not self.tasks:
            raise ValueError("tasks must name at least one '<source>:<task>'")
        for spec in self.tasks:
            parse_task_spec(spec)
        if self.task_weights is not None:
            self.task_weights = list(self.task_weights)
            if len(self.task_weights) != len(self.tasks):
                raise ValueError(f"{len(self.task_weights)} task_weights for {len(self.tasks)} tasks")
        for name in ("test_path", "dev_path"):
            paths = getattr(self, name)
            if paths is not None:
                setattr(self, name, list(paths))
                if len(paths) != len(self.tasks):
                    raise ValueError(f"{name} entries must be one per task ('-' = the default)")

    def _check_choices(self) -> None:
        unknown = set(self.baselines) - set(BASELINES)
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; expected any of {BASELINES} (or none)")
        choices = {
            "mixture_strategy": MIXTURE_STRATEGIES,
            "eval_split": EVAL_SPLITS,
            "label_decoding": LABEL_DECODINGS,
            "baseline_budget": BASELINE_BUDGETS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def _check_sizes(self) -> None:
        positive = ("mixture_temperature", "lora_r", "max_new_tokens", "eval_batch_size", "max_listed_labels")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.dev_curve_rows < 0:
            raise ValueError(f"dev_curve_rows must be >= 0, got {self.dev_curve_rows}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @property
    def weights(self) -> dict[str, float]:
        """``{task spec: weight}`` (1 each when no weights are given)."""
        return dict(zip(self.tasks, self.task_weights or [1.0] * len(self.tasks)))

    @property
    def constrained(self) -> bool:
        """Whether label fields are decoded over the label set (a label trie)."""
        return self.label_decoding == "constrained"

    @property
    def quantization_mode(self) -> str | None:
        """``"4bit"`` or ``None``, as the student loader takes it."""
        return "4bit" if self.quantization else None
