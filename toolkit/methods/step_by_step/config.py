"""Distilling step-by-step configuration: the method's knobs, where a run's rows come from, and their checks.

:class:`StepByStepConfig` is the one object the library reads. A recipe's argument class may extend it (so the
fields, defaults and help texts are written once and the ``--config`` YAML / CLI flags parse into it), but the
recipe hands the library a plain :class:`StepByStepConfig` built from its values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.methods.step_by_step.scoring import TASKS

MODES = ("standard", "task_prefix")
LABEL_SOURCES = ("gt", "llm")
# The paper's prefixes (their code: "predict: " / "explain: "); its standard model gets no prefix.
LABEL_PREFIX = "predict: "
RATIONALE_PREFIX = "explain: "

__all__ = ["LABEL_PREFIX", "LABEL_SOURCES", "MODES", "RATIONALE_PREFIX", "StepByStepConfig", "label_prefix_for"]


def label_prefix_for(mode: str, label_prefix: str | None = None) -> str:
    """The label-task prefix of a run: ``label_prefix`` when given, else ``predict: `` with rationales, else none."""
    if label_prefix is not None:
        return label_prefix
    return LABEL_PREFIX if mode == "task_prefix" else ""


@dataclass
class StepByStepConfig:
    """A distilling step-by-step run: the two-task setup, sequence lengths, and the train / validation / test rows.

    ``__post_init__`` checks every value and fills the sources a run names implicitly (``train_source`` defaults to
    ``palm:<task>``; ``dev_path`` / ``test_path`` win over ``eval_source`` / ``test_source``); it never touches any
    other object.
    """

    # ---- the method ----
    mode: str = field(default="task_prefix", metadata={"help": "standard | task_prefix."})
    label_source: str = field(default="gt", metadata={"help": "gt (gold labels) | llm (teacher labels)."})
    alpha: float = field(default=0.5, metadata={"help": "Label-task weight a in a*label + (1-a)*rationale."})
    label_prefix: str | None = field(
        default=None,
        metadata={"help": "Label-task input prefix; default 'predict: ' for task_prefix, none for standard."},
    )
    rationale_prefix: str = field(default=RATIONALE_PREFIX, metadata={"help": "Rationale-task input prefix."})
    chat_template: bool = field(default=False, metadata={"help": "Causal: wrap prompts in the chat template."})
    max_input_length: int = field(default=256, metadata={"help": "Max input tokens."})
    max_label_length: int = field(default=32, metadata={"help": "Max label tokens (eos included)."})
    max_rationale_length: int = field(default=128, metadata={"help": "Max rationale tokens (eos included)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Generation budget for labels."})
    generation_batch_size: int = field(default=16, metadata={"help": "Batch size for evaluation generation."})

    # ---- the data ----
    task: str = field(default="svamp", metadata={"help": "cqa | svamp | anli1 | esnli (formatting and scoring)."})
    train_source: str | None = field(
        default=None, metadata={"help": "'palm:<task>' or a saved rationale dataset path; default palm:<task>."}
    )
    train_split: str = field(default="train", metadata={"help": "Split of train_source to train on."})
    eval_source: str | None = field(
        default=None, metadata={"help": "Validation source; with eval_split unset its 'dev' split is used."}
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "Validation split of eval_source (default train_source); unset with no eval_source/dev_path = "
            "carve dev_size rows from train (seeded)."
        },
    )
    dev_path: str | None = field(
        default=None, metadata={"help": "Official validation file/dataset; overrides eval_source, no carve."}
    )
    dev_size: float = field(default=0.1, metadata={"help": "Carved validation size: fraction (<1) or row count."})
    test_source: str | None = field(default=None, metadata={"help": "Test source (default: palm:<task>)."})
    test_split: str = field(default="test", metadata={"help": "Test split (never used for selection)."})
    test_path: str | None = field(
        default=None, metadata={"help": "Official test file/dataset (gold labels); overrides test_source."}
    )
    allow_test_contamination: bool = field(
        default=False,
        metadata={
            "help": "Run even if train/validation rows come from the test split or share test inputs (refused by "
            "default; recorded in metrics.json)."
        },
    )
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default: TOOLKIT_DATA_DIR)."})
    input_column: str | None = field(default=None, metadata={"help": "Input text column of a saved dataset."})
    label_column: str | None = field(default=None, metadata={"help": "Gold label column of a saved dataset."})
    svamp_equations: bool = field(
        default=True, metadata={"help": "SVAMP targets are equations (paper) scored by value, not bare numbers."}
    )
    train_fraction: float = field(default=1.0, metadata={"help": "Fraction of train used (data-size curve)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on train rows (after fraction)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on validation rows."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Cap on test rows."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the dev carve and subsampling."})
    exclude_parse_failures: bool = field(
        default=False,
        metadata={
            "help": "Also drop teacher parse failures where they are valid rows (standard, gold labels), so every "
            "mode trains on the same examples. They are always dropped where they have no target."
        },
    )

    def __post_init__(self):
        self.check_method()
        self.check_data()
        self.train_source = self.train_source or f"palm:{self.task}"
        # The official-file flags win over a config's *_source (a YAML names the PaLM source by default).
        self.eval_source = self.dev_path or self.eval_source
        self.test_source = self.test_path or self.test_source or f"palm:{self.task}"

    def check_method(self) -> None:
        """Raise ``ValueError`` on an unknown mode or label source, an alpha outside [0, 1], a non-positive length."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(f"label_source must be one of {LABEL_SOURCES}, got {self.label_source!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        lengths = ("max_input_length", "max_label_length", "max_rationale_length", "max_new_tokens")
        for name in (*lengths, "generation_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def check_data(self) -> None:
        """Raise ``ValueError`` on an unknown task, a train fraction outside (0, 1] or a non-positive dev size."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.dev_size <= 0:
            raise ValueError(f"dev_size must be positive, got {self.dev_size}")

    @property
    def label_task_prefix(self) -> str:
        """The prefix the label task is trained and queried with (:func:`label_prefix_for`)."""
        return label_prefix_for(self.mode, self.label_prefix)

    @property
    def effective_alpha(self) -> float:
        """The label-task weight that applies: ``alpha`` with rationales, 1 (the label task alone) without."""
        return self.alpha if self.mode == "task_prefix" else 1.0
