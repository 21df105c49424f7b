"""LLMEmbed recipe: classify with fused multi-layer hidden states of a small LLM (+ an encoder), vs baselines.

Paper: "LLMEmbed: Rethinking Lightweight LLM's Genuine Function in Text Classification" (ACL 2024).

    accelerate launch recipes/llmembed.py --config recipes/configs/llmembed/sst2.yaml

One run = one dataset, one set of splits (``--test_path`` / ``--dev_path`` files, else the dataset's official
splits, carved from train only when neither exists), and a comparison over every method on those splits:
LLMEmbed (LLM layers + encoder), ablations (LLM-only, last-layer-only, encoder-only), a fine-tuned encoder
(``toolkit.encoder_baseline``) and the same LLM prompted few-shot (``toolkit.teachers`` ``hf`` backend, greedy).
Costs: wall seconds, process CPU seconds and an energy estimate (CPU-s × ``watts_per_core``); model loading is
excluded for every method, and cached features are charged the extraction cost measured when they were built.
Every row of a results table is scored on the same test rows: when the prompted baseline covers only the first
``few_shot_max_test`` rows, a second table scores every method on those rows (``toolkit.llmembed_tables``).
The recipe is single-process at heart: under a multi-process launch the main process does the work.
"""

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import llmembed as le
from toolkit.configs import make_parser as _make_parser
from toolkit.configs import save_config, setup_logging
from toolkit.llmembed_tables import MethodResult, build_tables, render_tables
from toolkit.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads
from toolkit.tracking import check_report_to, write_history

logger = logging.getLogger("recipes.llmembed")
DATASETS = ("sst2", "ag_news", "r8", "20newsgroups")


@dataclass
class DataArguments:
    dataset: str = field(default="sst2", metadata={"help": f"One of {DATASETS} (via toolkit.tasks.classification)."})
    train_path: str | None = field(
        default=None, metadata={"help": "Local text/label train file instead of `dataset`."}
    )
    dev_path: str | None = field(
        default=None, metadata={"help": "Validation file (default: the dataset's dev split, else carved from train)."}
    )
    test_path: str | None = field(
        default=None, metadata={"help": "Test file (default: the dataset's test split, else carved from train)."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default $TOOLKIT_DATA_DIR)."})
    max_train_samples: int = field(
        default=1500, metadata={"help": "Labelled budget: val_size validation rows + the rest train (seeded)."}
    )
    val_size: int = field(default=300, metadata={"help": "Validation rows (from dev, else carved from train)."})
    max_test_samples: int = field(default=500, metadata={"help": "Seeded test subsample."})

    def __post_init__(self):
        if self.train_path is None and self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.val_size < 1 or self.max_train_samples <= self.val_size:
            raise ValueError("need 1 <= val_size < max_train_samples")


@dataclass
class LLMEmbedArguments:
    llm_model: str = field(default="local:smollm2-135m", metadata={"help": "Causal LM backbone."})
    llm_layers: list[int] = field(
        default_factory=lambda: [-5, -4, -3, -2, -1], metadata={"help": "Layers (<0: from last)."}
    )
    llm_pooling: str = field(default="mean", metadata={"help": "mean (masked) or last (last real token)."})
    encoder_model: str | None = field(default="local:minilm-l6", metadata={"help": "Sentence encoder view."})
    encoder_pooling: str = field(default="mean", metadata={"help": "Encoder pooling (mean or last)."})
    max_length: int = field(default=128, metadata={"help": "Truncation length (tokens) for every model."})
    extract_batch_size: int = field(default=16, metadata={"help": "Texts per forward pass."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Embedding cache (default $TOOLKIT_CACHE/llmembed)."}
    )
    variants: list[str] = field(default_factory=lambda: list(le.VARIANTS), metadata={"help": f"Of {le.VARIANTS}."})
    proj_dim: int = field(default=256, metadata={"help": "Per-view projection size."})
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 256], metadata={"help": "MLP hidden sizes."})
    sigma: float = field(default=1.0, metadata={"help": "Co-occurrence scale: 2*sigmoid(sigma*x)-1."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout in projections and MLP."})
    epochs: int = field(default=100, metadata={"help": "Max head epochs (early stopping on validation)."})
    patience: int = field(default=10, metadata={"help": "Epochs without validation gain before stopping."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(default=64, metadata={"help": "Head training batch size."})

    def __post_init__(self):
        for v in self.variants:
            if v not in le.VARIANTS:
                raise ValueError(f"unknown variant {v!r}; expected {le.VARIANTS}")
        if not self.encoder_model and any(
            v in ("llmembed", "encoder_only", "llmembed_last_token") for v in self.variants
        ):
            raise ValueError("variants llmembed/encoder_only need encoder_model")
        for p in (self.llm_pooling, self.encoder_pooling):
            if p not in le.POOLING_CHOICES:
                raise ValueError(f"pooling must be one of {le.POOLING_CHOICES}, got {p!r}")


@dataclass
class BaselineArguments:
    run_encoder_baseline: bool = field(default=True, metadata={"help": "Fine-tune encoder_model as a classifier."})
    encoder_epochs: float = field(default=3.0, metadata={"help": "Fine-tuning epochs."})
    encoder_learning_rate: float = field(default=5e-5, metadata={"help": "Fine-tuning learning rate."})
    encoder_batch_size: int = field(default=16, metadata={"help": "Fine-tuning batch size."})
    run_few_shot: bool = field(default=True, metadata={"help": "Prompt llm_model few-shot (greedy) as a baseline."})
    few_shot_per_class: int = field(default=1, metadata={"help": "Demonstrations per label."})
    few_shot_max_test: int | None = field(
        default=None,
        metadata={
            "help": "Prompt only the first N test rows (null: all). Fewer rows add a table of every method on them."
        },
    )
    few_shot_max_chars: int = field(default=400, metadata={"help": "Demo/query texts clipped to this many chars."})
    few_shot_max_new_tokens: int = field(default=8, metadata={"help": "Generation cap for the label."})
    few_shot_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})


@dataclass
class RunArguments:
    output_dir: str = field(default="runs/llmembed", metadata={"help": "Where metrics/table/plots/head go."})
    seed: int = field(default=42, metadata={"help": "Seed for subsampling, head init and training."})
    watts_per_core: float = field(default=le.DEFAULT_WATTS_PER_CORE, metadata={"help": "Energy estimate W/core."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the trained LLMEmbed head."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (never saved)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    report_to: list[str] = field(
        default_factory=list, metadata={"help": "none | tensorboard: head curves in <output_dir>/runs/<variant>."}
    )

    def __post_init__(self):
        self.report_to = check_report_to(self.report_to)
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")


def make_parser():
    return _make_parser([DataArguments, LLMEmbedArguments, BaselineArguments, RunArguments])


OFFICIAL_DEV = {"sst2": "dev"}  # loaders with an official validation split; the others carve it from train


def _read_sources(args: DataArguments):
    """``(train, dev | None, test | None, where)``: official or given splits; ``None`` = carve from train.

    ``where`` names each split's source (file names only: it goes into tables and model cards).
    """
    from toolkit.tasks.base import load_local

    if args.train_path:
        train, dev, test, where = load_local(args.train_path), None, None, {"train": Path(args.train_path).name}
    else:
        from toolkit.tasks import classification

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

    Test and validation come from ``test_path`` / ``dev_path``, else the dataset's official splits; only when
    neither exists are they carved from the shuffled train pool (test first, then validation), disjoint from
    the training rows. Label names: the train split's ``ClassLabel`` names, else the sorted string labels of
    every split.
    """
    train, dev, test, where = _read_sources(args)
    given = [ds for ds in (train, dev, test) if ds is not None]
    feat = train.features["label"]
    names = list(feat.names) if hasattr(feat, "names") else sorted({str(y) for ds in given for y in ds["label"]})

    def rows(ds, split):
        f = ds.features["label"]
        ids = []
        for y in ds["label"]:
            name = f.names[y] if hasattr(f, "names") else str(y)
            if name not in names:
                raise ValueError(f"{split} label {name!r} is not one of the training labels {names}")
            ids.append(names.index(name))
        return list(ds["text"]), ids

    pool, taken = train.shuffle(seed=seed), 0

    def carve(n, split):
        nonlocal taken
        part = pool.select(range(taken, min(taken + n, len(pool))))
        taken += len(part)
        if split != "train":
            where[split] = f"carved from {where['train']}"
        return part

    def sample(ds, n):
        return ds.shuffle(seed=seed).select(range(min(n, len(ds))))

    test = carve(args.max_test_samples, "test") if test is None else sample(test, args.max_test_samples)
    dev = carve(args.val_size, "dev") if dev is None else sample(dev, args.val_size)
    train = carve(args.max_train_samples - args.val_size, "train")
    if not len(train):
        raise ValueError(f"no training rows left in {where['train']} after carving validation/test")
    return rows(train, "train"), rows(dev, "dev"), rows(test, "test"), names, where


def main(data_args, model_args, base_args, run_args):
    from accelerate import PartialState

    from toolkit import reporting
    from toolkit.models import cache_dir as toolkit_cache

    setup_logging()
    configure_threads()
    state = PartialState()
    if not state.is_main_process:  # see module docstring: nothing here is worth sharding
        state.wait_for_everyone()
        return None
    out = Path(run_args.output_dir)
    random.seed(run_args.seed)

    # ---- Data ----
    train, val, test, names, where = load_splits(data_args, run_args.seed)
    logger.info("train %d / val %d / test %d, %d labels", len(train[0]), len(val[0]), len(test[0]), len(names))
    logger.info("splits: %s", where)

    # ---- Extract ----
    cache = model_args.cache_dir or str(toolkit_cache() / "llmembed")
    sources = {"llm": (model_args.llm_model, model_args.llm_layers, model_args.llm_pooling)}
    if "llmembed_last_token" in model_args.variants:  # pooling ablation: same forward passes, last real token
        sources["llm_last"] = (model_args.llm_model, model_args.llm_layers, "last")
    if model_args.encoder_model:
        sources["encoder"] = (model_args.encoder_model, [-1], model_args.encoder_pooling)
    feats, extract_cost, params = {}, {}, {}
    for group in (["llm", "llm_last"], ["encoder"]):
        group = [g for g in group if g in sources]
        if not group:
            continue
        specs = [
            le.ExtractionSpec(sources[g][0], list(sources[g][1]), sources[g][2], model_args.max_length,
                              model_args.extract_batch_size)
            for g in group
        ]  # fmt: skip
        loaded: dict = {}

        def lazy(model=specs[0].model, loaded=loaded):  # load the backbone once, only on a cache miss
            if "bb" not in loaded:
                loaded["bb"] = le.load_backbone(model, padding_side="right")
            return loaded["bb"]

        parts = [le.get_or_extract_many(specs, texts, cache, backbone=lazy) for texts, _ in (train, val, test)]
        for j, name in enumerate(group):
            feats[name] = [p[j][0] for p in parts]
            costs = [le.Cost(p[j][1]["extract_wall_s"], p[j][1]["extract_cpu_s"]) for p in parts]
            cached = all(p[j][1]["cache_hit"] for p in parts)
            extract_cost[name] = {"train": costs[0] + costs[1], "test": costs[2], "cached": cached}
            params[name] = le.checkpoint_num_params(sources[name][0])

    # ---- Train / Evaluate: LLMEmbed and ablations ----
    results, predictions, best_head = [], {}, None
    for variant in model_args.variants:
        split_views = [le.select_views({k: v[i] for k, v in feats.items()}, variant) for i in range(3)]
        (tr, mean_group), (va, _), (te, _) = split_views
        cfg = le.HeadConfig(
            view_dims=[v.shape[1] for v in tr], mean_group=mean_group, num_labels=len(names),
            proj_dim=model_args.proj_dim, hidden_dims=list(model_args.hidden_dims), sigma=model_args.sigma,
            dropout=model_args.dropout, label_names=names,
        )  # fmt: skip
        import torch

        torch.manual_seed(run_args.seed)
        head = le.make_head(cfg)
        with le.CostMeter() as train_m:
            hist = le.train_head(
                head, tr, train[1], va, val[1], epochs=model_args.epochs, learning_rate=model_args.learning_rate,
                weight_decay=model_args.weight_decay, batch_size=model_args.batch_size, patience=model_args.patience,
                seed=run_args.seed,
            )  # fmt: skip
        if "tensorboard" in run_args.report_to:  # one run per variant, x axis = head epoch
            write_history(hist["history"], out / "runs" / variant)
        with le.CostMeter() as infer_m:
            preds = le.predict_logits(head, te).argmax(-1).tolist()
        used = {
            "encoder_only": ["encoder"],
            "llmembed": ["llm", "encoder"],
            "llmembed_last_token": ["llm_last", "encoder"],
        }
        used = used.get(variant, ["llm"])
        extract_train = sum((extract_cost[s]["train"] for s in used), le.Cost())
        train_cost = train_m.cost + extract_train
        infer_cost = infer_m.cost + sum((extract_cost[s]["test"] for s in used), le.Cost())
        predictions[variant] = [names[p] for p in preds]
        n_head = le.count_parameters(head)
        infer_params = n_head + sum(params[s] or 0 for s in used)
        cached = all(extract_cost[s]["cached"] for s in used)
        results.append(
            MethodResult(variant, preds, train_cost, infer_cost, len(train[0]), n_head, infer_params,
                         extract_train, extra={"best_epoch": hist["best_epoch"], "features_cached": cached})
        )  # fmt: skip
        if variant == "llmembed" or best_head is None:
            best_head = (variant, head, hist)

    # ---- Baselines ----
    golds = [names[y] for y in test[1]]
    if base_args.run_encoder_baseline and model_args.encoder_model:
        from datasets import ClassLabel, Dataset, Features, Value

        from toolkit.encoder_baseline import finetune_sequence_classifier

        features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
        ds = [Dataset.from_dict({"text": t, "label": y}, features=features) for t, y in (train, test)]
        with le.CostMeter() as m:  # dev=None: the fixed budget needs no model selection, and it keeps CPU honest
            res = finetune_sequence_classifier(
                model_args.encoder_model, ds[0], None, ds[1], epochs=base_args.encoder_epochs,
                learning_rate=base_args.encoder_learning_rate, batch_size=base_args.encoder_batch_size,
                max_length=model_args.max_length, seed=run_args.seed, report_to=run_args.report_to,
                output_dir=str(out / "baselines" / "finetuned_encoder") if run_args.report_to else None,
            )  # fmt: skip
        predictions["finetuned_encoder"] = res["predictions"]
        # CPU time is measured for the whole call; split between train/infer by their wall-time shares.
        share = res["train_seconds"] / max(res["train_seconds"] + res["infer_seconds"], 1e-9)
        tr_c = le.Cost(res["train_seconds"], m.cost.cpu_s * share)
        in_c = le.Cost(res["infer_seconds"], m.cost.cpu_s * (1 - share))
        pred_ids = [names.index(p) for p in res["predictions"]]
        n_enc = params.get("encoder")
        results.append(MethodResult("finetuned_encoder", pred_ids, tr_c, in_c, len(train[0]), n_enc, n_enc))
    if base_args.run_few_shot:
        from toolkit.teachers import TeacherConfig, load_teacher

        teacher = load_teacher(
            TeacherConfig(backend="hf", model=model_args.llm_model, batch_size=base_args.few_shot_batch_size)
        )
        demos = le.pick_demos(
            train[0], [names[y] for y in train[1]], names, base_args.few_shot_per_class, run_args.seed
        )
        n = min(base_args.few_shot_max_test or len(test[0]), len(test[0]))
        if hasattr(teacher, "load"):
            teacher.load()  # model loading is excluded from every method's cost
        with le.CostMeter() as m:
            fs_preds, raw = le.few_shot_classify(
                teacher, demos, test[0][:n], names, max_new_tokens=base_args.few_shot_max_new_tokens,
                max_chars=base_args.few_shot_max_chars,
            )  # fmt: skip
        pred_ids = [names.index(p) if p is not None else -1 for p in fs_preds]
        n_demos, n_llm = len(demos), params["llm"]
        results.append(MethodResult("few_shot_prompt", pred_ids, le.Cost(), m.cost, n_demos, 0, n_llm))
        predictions["few_shot_prompt"] = [p if p is not None else "<invalid>" for p in fs_preds]
        predictions["few_shot_raw"] = raw

    # ---- Save / push ----
    state.wait_for_everyone()
    tables = build_tables(results, test[1], names, run_args.watts_per_core)
    rows = tables["all"]["rows"] if "all" in tables else []
    preamble = "Splits (seeded samples): " + "; ".join(
        f"{split} {len(part[0])} rows ({where[key]})" for split, key, part in
        (("train", "train", train), ("validation", "dev", val), ("test", "test", test))
    ) + ". Every row of a table is scored on the same test rows."  # fmt: skip
    table = render_tables(tables, preamble)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table, encoding="utf-8")
    dataset = data_args.train_path or data_args.dataset
    metrics = {"dataset": dataset, "labels": names, "rows": rows, "tables": tables, "splits": where,
               "sizes": {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])},
               "extraction": {k: {s: vars(c) if isinstance(c, le.Cost) else c for s, c in v.items()} for k, v in extract_cost.items()},
               "backbone_params": params, "head_history": best_head[2]["history"],
               "watts_per_core": run_args.watts_per_core, "hub_url": None}  # fmt: skip
    reporting.write_jsonl(out / "predictions.jsonl", [
        {"text": t, "gold": g, **{k: v[i] for k, v in predictions.items() if i < len(v)}} for i, (t, g) in enumerate(zip(test[0], golds))
    ])  # fmt: skip
    # Energy totals only compare on one row count (the all-rows table); per-example CPU compares every method
    # on the rows they all scored.
    reporting.plot_xy(rows, "energy_wh", "accuracy", "method", out / "accuracy_vs_energy.png",
                      title=f"accuracy vs energy: all {len(test[0])} test rows")  # fmt: skip
    common = tables.get("subset", tables.get("all"))
    reporting.plot_xy(common["rows"], "infer_cpu_ms_per_ex", "accuracy", "method", out / "accuracy_vs_inference_cpu.png",
                      title=f"accuracy vs inference CPU ms/ex: {common['n_rows']} test rows")  # fmt: skip
    reporting.plot_confusion_matrix(golds, predictions[best_head[0]], names, out / "confusion_matrix.png")
    save_config(out / "config.json", data=data_args, model=model_args, baselines=base_args, run=run_args)
    head_dir = le.save_head(best_head[1], out / "head", extra={"extraction": {k: sources[k] for k in sources}})
    _write_card(
        head_dir, best_head[0], next(r for r in rows if r["method"] == best_head[0]), table, model_args, dataset
    )
    if run_args.push_to_hub:
        from toolkit.hub import push_to_hub

        metrics["hub_url"] = push_to_hub(
            head_dir, run_args.hub_model_id, token=run_args.hub_token, private=run_args.hub_private
        )
    reporting.write_metrics(out, metrics)
    report_from_run_dir(out)  # report.html: tables, curves, sample rows, lineage, command
    print(table)
    return metrics


def _write_card(head_dir, variant, row, table, model_args, dataset):
    from toolkit.hub import render_model_card

    card = render_model_card(
        model_name=f"llmembed-{variant}-{Path(dataset).stem}",
        base_model=model_args.llm_model,
        task="classification",
        recipe="llmembed",
        metrics={"test": {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}},
        training_config=model_args,
        datasets=[dataset],
        library_name=None,
        summary=(
            f"An LLMEmbed fusion + MLP head ({variant}) over pooled hidden states of `{model_args.llm_model}` "
            f"layers {list(model_args.llm_layers)}"
            + (f" and `{model_args.encoder_model}`" if model_args.encoder_model else "")
            + ". It needs those backbones to extract its input features (see `head_config.json`)."
        ),
        extra_sections={"Comparison on the same splits": table},
    )
    (Path(head_dir) / "README.md").write_text(card, encoding="utf-8")


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
