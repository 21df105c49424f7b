"""Seeded train / validation / test splits of a text-classification set, with where each split came from.

Test and validation come from given files, else the dataset's official splits; only when neither exists are they
carved from the shuffled train pool, disjoint from the training rows. Used by the LLMEmbed recipe, whose whole
comparison (embedding heads, a fine-tuned encoder, few-shot prompting) runs on one set of these splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toolkit.tasks import classification
from toolkit.tasks.local import load_local

DATASETS = ("sst2", "ag_news", "r8", "20newsgroups")
OFFICIAL_DEV = {"sst2": "dev"}  # loaders with an official validation split; the others carve it from train


@dataclass
class DataArguments:
    """Which classification data, and how many rows of each split (the arguments of :func:`load_splits`)."""

    dataset: str = field(default="sst2", metadata={"help": f"One of {DATASETS} (via toolkit.tasks.classification)."})
    train_path: str | None = field(default=None, metadata={"help": "Local text/label train file instead."})
    dev_path: str | None = field(default=None, metadata={"help": "Validation file (default: official, else carved)."})
    test_path: str | None = field(default=None, metadata={"help": "Test file (default: official, else carved)."})
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default $TOOLKIT_DATA_DIR)."})
    max_train_samples: int = field(default=1500, metadata={"help": "val_size validation rows + the rest train."})
    val_size: int = field(default=300, metadata={"help": "Validation rows (from dev, else carved from train)."})
    max_test_samples: int = field(default=500, metadata={"help": "Seeded test subsample."})
    split_seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the splits and subsamples (default: the run's seed). Fix it to vary only training."
        },
    )

    def __post_init__(self):
        if self.train_path is None and self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.val_size < 1 or self.max_train_samples <= self.val_size:
            raise ValueError("need 1 <= val_size < max_train_samples")


def _read_sources(args: DataArguments):
    """``(train, dev | None, test | None, where)``: official or given splits; ``None`` = carve from train.

    ``where`` names each split's source (file names only: it goes into tables and model cards).
    """
    if args.train_path:
        train, dev, test, where = load_local(args.train_path), None, None, {"train": Path(args.train_path).name}
    else:

        def load(split):
            return getattr(classification, f"load_{args.dataset}")(split, data_dir=args.data_dir)

        dev_split = OFFICIAL_DEV.get(args.dataset)
        train, test, dev = load("train"), load("test"), load(dev_split) if dev_split else None
        where = {"train": f"{args.dataset} train", "test": f"{args.dataset} test, official"}
        if dev_split:
            where["dev"] = f"{args.dataset} {dev_split}, official"
    if args.dev_path:
        dev, where["dev"] = load_local(args.dev_path), Path(args.dev_path).name
    if args.test_path:
        test, where["test"] = load_local(args.test_path), Path(args.test_path).name
    return train, dev, test, where


def load_splits(args: DataArguments, seed: int):
    """Seeded ``(train, val, test, label_names, where)``: ``(texts, label ids)`` splits and where each came from.

    ``args.split_seed`` seeds the shuffles when set, else ``seed`` (the run's seed): with it fixed, runs at several
    training seeds share their train, validation and test rows.

    Test and validation come from ``test_path`` / ``dev_path``, else the dataset's official splits; only when
    neither exists are they carved from the shuffled train pool (test first, then validation), disjoint from
    the training rows. Label names: the train split's ``ClassLabel`` names, else the sorted string labels of
    every split.
    """
    seed = seed if args.split_seed is None else args.split_seed
    train, dev, test, where = _read_sources(args)
    given = [ds for ds in (train, dev, test) if ds is not None]
    feat = train.features["label"]
    names = list(feat.names) if hasattr(feat, "names") else sorted({str(y) for ds in given for y in ds["label"]})

    def rows(ds, split):
        label_feature = ds.features["label"]
        ids = []
        for label_id in ds["label"]:
            name = label_feature.names[label_id] if hasattr(label_feature, "names") else str(label_id)
            if name not in names:
                raise ValueError(f"{split} label {name!r} is not one of the training labels {names}")
            ids.append(names.index(name))
        return list(ds["text"]), ids

    pool, taken = train.shuffle(seed=seed), 0

    def carve(num_rows, split):
        nonlocal taken
        part = pool.select(range(taken, min(taken + num_rows, len(pool))))
        taken += len(part)
        if split != "train":
            where[split] = f"carved from {where['train']}"
        return part

    def sample(ds, num_rows):
        return ds.shuffle(seed=seed).select(range(min(num_rows, len(ds))))

    test = carve(args.max_test_samples, "test") if test is None else sample(test, args.max_test_samples)
    dev = carve(args.val_size, "dev") if dev is None else sample(dev, args.val_size)
    train = carve(args.max_train_samples - args.val_size, "train")
    if not len(train):
        raise ValueError(f"no training rows left in {where['train']} after carving validation/test")
    return rows(train, "train"), rows(dev, "dev"), rows(test, "test"), names, where
