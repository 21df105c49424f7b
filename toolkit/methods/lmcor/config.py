"""The LMCor method's knobs: which rows, which candidates, how the corrector reads them, how the run is scored.

:class:`LMCorConfig` is to LMCor what ``SFTConfig`` is to TRL's SFT trainer: a dataclass the recipe parses from the
command line and YAML (its field names are the recipe's flags) and every library function of
:mod:`toolkit.methods.lmcor` reads. It checks itself in ``__post_init__`` and resolves its own derived values
(``task_type`` from the task, ``eval_tokenize="auto"``); it never touches another object.

The teacher that generates missing candidates (backend, model, server, key) is a
:class:`~toolkit.teachers.TeacherConfig` passed next to it: the key is a secret and stays out of the method's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODES", "NAMED_SPLITS", "POOL_TASKS", "TASK_METRICS", "TASK_TYPES", "WMT22_POOLS", "LMCorConfig"]

TASK_TYPES = ("gec", "mt", "d2t")
# corrector: rewrite the candidates into the reference (LMCor); reranker: the paper's ranking baseline, the same
# student on the same inputs trained to copy the candidate closest to the reference.
MODES = ("corrector", "reranker")
# Metrics reported per task family; the first one is the headline (used to pick the best single system).
TASK_METRICS = {"gec": ("gleu", "bleu", "chrf"), "mt": ("bleu", "chrf"), "d2t": ("bleu", "rougeL")}
WMT22_POOLS = {"wmt22_ende": "en-de", "wmt22_deen": "de-en", "wmt22_zhen": "zh-en", "wmt22_csen": "cs-en"}
# Named candidate pools and their task family (jsonl: any pool file, its family given by task_type).
POOL_TASKS = {"demo_gec": "gec", "jfleg": "gec", **dict.fromkeys(WMT22_POOLS, "mt"), "e2e": "d2t", "jsonl": None}
# Official splits a named loader serves, for test_path / dev_path "name:split" (JFLEG test is not in the data folder:
# pass its files as a local JSONL instead).
NAMED_SPLITS = ("jfleg:dev", "e2e:dev", "e2e:test")
EVAL_TOKENIZERS = ("auto", "ptb", "none")


def check_split_spec(name: str, spec: str | None) -> None:
    """Validate a ``test_path`` / ``dev_path`` value: an existing file/folder or one of :data:`NAMED_SPLITS`."""
    if spec and not Path(spec).exists() and spec not in NAMED_SPLITS:
        raise ValueError(f"{name}={spec!r} is neither an existing file/folder nor one of {NAMED_SPLITS}")


@dataclass
class LMCorConfig:
    """Data, candidate pool, corrector input format, candidate sampling and scoring of one LMCor run."""

    # ---- rows: the pool and its split ----
    task: str = field(default="demo_gec", metadata={"help": f"Pool: one of {sorted(POOL_TASKS)}."})
    task_type: str | None = field(default=None, metadata={"help": "gec / mt / d2t (required for task=jsonl)."})
    data_dir: str | None = field(default=None, metadata={"help": "Real-data root (default $TOOLKIT_DATA_DIR)."})
    pool_path: str | None = field(default=None, metadata={"help": "Candidates dataset (data_gen/candidates.py)."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub revision of a pool_path on the Hub."})
    test_path: str | None = field(default=None, metadata={"help": "Official test set: a file, jfleg:dev, e2e:test."})
    dev_path: str | None = field(default=None, metadata={"help": "Official dev set, as test_path."})
    max_source_words: int | None = field(default=None, metadata={"help": "Drop pool rows with longer sources."})
    max_source_chars: int | None = field(
        default=None,
        metadata={"help": "Drop pool rows whose source has more characters (for scripts without spaces, e.g. zh)."},
    )
    dev_size: float = field(default=0.1, metadata={"help": "Dev rows: int count (>= 1) or fraction."})
    test_size: float = field(default=0.2, metadata={"help": "Test rows: int count (>= 1) or fraction."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the deterministic group-aware split."})
    split_block: int = field(default=0, metadata={"help": "Split by blocks of this many pool rows (0 = groups)."})
    max_train_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the train split."})
    max_dev_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the dev split."})
    max_test_rows: int | None = field(default=None, metadata={"help": "Seeded subsample of the test split."})
    # ---- what the student learns, and the candidates it reads ----
    mode: str = field(default="corrector", metadata={"help": f"One of {MODES}: rewrite, or pick a candidate."})
    k: int = field(default=5, metadata={"help": "Candidates per corrector input."})
    no_candidates: bool = field(default=False, metadata={"help": "Baseline: source -> reference, same budget."})
    single_candidate: bool = field(default=False, metadata={"help": "Ablation: the first (greedy) candidate only."})
    train_systems: list[str] = field(default_factory=list, metadata={"help": "Systems the corrector trains on."})
    test_systems: list[str] = field(default_factory=list, metadata={"help": "Unseen systems used at test time."})
    # ---- the corrector's input format and training examples ----
    separator: str = field(default=" <extra_id_0> ", metadata={"help": "Between source and candidates."})
    source_prefix: str = field(default="source: ", metadata={"help": "Before the source."})
    candidates_prefix: str = field(default="candidates: ", metadata={"help": "Before the first candidate."})
    shuffle_candidates: bool = field(default=True, metadata={"help": "Shuffle candidate order in training."})
    augment: int = field(default=1, metadata={"help": "Copies of each training example (new subsets/orders)."})
    multi_reference: bool = field(default=True, metadata={"help": "One training example per reference."})
    # ---- teacher candidates for rows that have none (the candidates job) ----
    num_demos: int = field(default=3, metadata={"help": "Few-shot demonstrations (from the train split)."})
    teacher_temperature: float = field(default=0.7, metadata={"help": "Temperature of the k-1 sampled candidates."})
    teacher_top_p: float = field(default=0.95, metadata={"help": "top_p of the sampled candidates."})
    teacher_max_tokens: int = field(default=64, metadata={"help": "Max tokens per candidate."})
    teacher_seed: int = field(default=0, metadata={"help": "Sampling seed."})
    cache_path: str | None = field(default=None, metadata={"help": "Generation cache (default under $TOOLKIT_CACHE)."})
    max_cost: float | None = field(default=None, metadata={"help": "USD budget for teacher calls."})
    # ---- scoring ----
    baseline_seed: int = field(default=0, metadata={"help": "Seed of the random-candidate baseline."})
    eval_tokenize: str = field(default="auto", metadata={"help": "ptb / none / auto (ptb for jfleg) before scoring."})

    def __post_init__(self):
        if self.task not in POOL_TASKS:
            raise ValueError(f"task must be one of {sorted(POOL_TASKS)}, got {self.task!r}")
        self.task_type = self.task_type or POOL_TASKS[self.task]
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {TASK_TYPES} (set it for task=jsonl)")
        if self.task == "jsonl" and not self.pool_path:
            raise ValueError("task=jsonl needs pool_path")
        if (self.max_source_words is not None and self.max_source_words < 1) or (
            self.max_source_chars is not None and self.max_source_chars < 1
        ):
            raise ValueError("max_source_words and max_source_chars must be >= 1 when set")
        if self.k < 1 or self.augment < 1 or self.split_block < 0 or self.num_demos < 0:
            raise ValueError("k and augment must be >= 1, split_block and num_demos >= 0")
        if self.no_candidates and self.single_candidate:
            raise ValueError("no_candidates and single_candidate exclude each other")
        self._check_mode()
        if self.eval_tokenize not in EVAL_TOKENIZERS:
            raise ValueError(f"eval_tokenize must be one of {EVAL_TOKENIZERS}, got {self.eval_tokenize!r}")
        if self.eval_tokenize == "auto":  # JFLEG's references are PTB-tokenised
            self.eval_tokenize = "ptb" if self.task == "jfleg" else "none"
        self._check_systems()
        self._check_given_splits()

    def _check_mode(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "reranker" and (self.no_candidates or self.single_candidate or self.k < 2):
            raise ValueError("mode=reranker picks one of k >= 2 candidates: not with no_candidates/single_candidate")

    def _check_systems(self) -> None:
        overlap = set(self.train_systems) & set(self.test_systems)
        if overlap:
            raise ValueError(f"train and test systems overlap: {overlap}")
        if bool(self.train_systems) != bool(self.test_systems):
            raise ValueError("give both train_systems and test_systems (held-out systems), or neither")

    def _check_given_splits(self) -> None:
        check_split_spec("test_path", self.test_path)
        check_split_spec("dev_path", self.dev_path)
        if self.test_path and self.test_path == self.dev_path:
            raise ValueError(f"test_path and dev_path are the same ({self.test_path}): dev would select on test")

    @property
    def candidates_read(self) -> int:
        """How many candidates each corrector input holds: 1 for the single-candidate ablation, else ``k``."""
        return 1 if self.single_candidate else self.k

    @property
    def hyp_tokenize(self) -> str | None:
        """The hypothesis tokenisation every row of the run's tables uses (``None`` = whitespace only)."""
        return None if self.eval_tokenize == "none" else self.eval_tokenize

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics of the task family, headline first."""
        return TASK_METRICS[self.task_type]
