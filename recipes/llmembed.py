"""LLMEmbed (Liu et al., ACL 2024): classify with fused multi-layer hidden states of a small LLM + an encoder.

    accelerate launch recipes/llmembed.py --config recipes/configs/llmembed/sst2.yaml

One run = one dataset, one set of splits (``toolkit.tasks.classification_splits``) and every method on them:
LLMEmbed and its ablations (``--variants``), a fine-tuned encoder and the same LLM prompted few-shot. Costs are wall
and process CPU seconds and an energy estimate (CPU-s × ``watts_per_core``), model loading excluded; cached features
are charged the extraction that built them. Every row of a table is scored on the same test rows
(``toolkit.evaluation.comparison``). The run directory holds the fused head (``model.safetensors`` + ``head_config.json``).
Single-process at heart: under a multi-process launch the main process does the work.
"""

import logging
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from accelerate import PartialState

from toolkit import configs
from toolkit.evaluation import comparison as cmp
from toolkit.meter import DEFAULT_WATTS_PER_CORE, Cost
from toolkit.methods.llmembed import head as le
from toolkit.methods.llmembed.embeddings import ExtractionSpec, checkpoint_num_params, extract_sources, extraction_cost
from toolkit.models import loading as models
from toolkit.publishing import reporting
from toolkit.publishing.cards import citation_block
from toolkit.publishing.hub import DEFAULT_IGNORE_PATTERNS
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.tasks.classification_splits import DataArguments, load_splits
from toolkit.training.tracking import check_report_to, log_final_metrics, write_history

logger = logging.getLogger("recipes.llmembed")
DESCRIPTION = (
    "LLMEmbed (Liu et al., 2024): hidden states of several layers of a frozen lightweight LLM, mean-pooled over the "
    "real tokens, are fused with a sentence encoder's embedding (co-occurrence pooling of the projected views plus "
    "the layer mean) and fed to a small MLP classifier; only that head is trained."
)
CITATION = """@inproceedings{liu-etal-2024-llmembed,
  title = {{LLMEmbed}: Rethinking Lightweight {LLM}'s Genuine Function in Text Classification},
  author = {Liu, Chun and Zhang, Hongguang and Zhao, Kainan and Ju, Xinghai and Yang, Lin},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics
               (Volume 1: Long Papers)},
  year = {2024}
}"""


@dataclass
class LLMEmbedArguments:
    llm_model: str = field(default="local:smollm2-135m", metadata={"help": "Causal LM backbone."})
    llm_layers: list[int] = field(default_factory=lambda: [-5, -4, -3, -2, -1], metadata={"help": "<0: from last."})
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
        if unknown := [v for v in self.variants if v not in le.VARIANTS]:
            raise ValueError(f"unknown variants {unknown}; expected {le.VARIANTS}")
        if not self.encoder_model and any("encoder" in le.VARIANT_SOURCES[v] for v in self.variants):
            raise ValueError("variants llmembed/encoder_only/llmembed_last_token need encoder_model")
        if bad := {self.llm_pooling, self.encoder_pooling} - set(le.POOLING_CHOICES):
            raise ValueError(f"pooling must be one of {le.POOLING_CHOICES}, got {sorted(bad)}")


@dataclass
class BaselineArguments:
    run_encoder_baseline: bool = field(default=True, metadata={"help": "Fine-tune encoder_model as a classifier."})
    encoder_epochs: float = field(default=3.0, metadata={"help": "Fine-tuning epochs."})
    encoder_learning_rate: float = field(default=5e-5, metadata={"help": "Fine-tuning learning rate."})
    encoder_batch_size: int = field(default=16, metadata={"help": "Fine-tuning batch size."})
    run_few_shot: bool = field(default=True, metadata={"help": "Prompt llm_model few-shot (greedy) as a baseline."})
    few_shot_per_class: int = field(default=1, metadata={"help": "Demonstrations per label."})
    few_shot_max_test: int | None = field(default=None, metadata={"help": "Prompt only the first N test rows."})
    few_shot_max_chars: int = field(default=400, metadata={"help": "Demo/query texts clipped to this many chars."})
    few_shot_max_new_tokens: int = field(default=8, metadata={"help": "Generation cap for the label."})
    few_shot_batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})


@dataclass
class RunArguments:
    output_dir: str = field(default="runs/llmembed", metadata={"help": "Run directory (artifacts + head)."})
    seed: int = field(default=42, metadata={"help": "Seed for subsampling, head init and training."})
    watts_per_core: float = field(default=DEFAULT_WATTS_PER_CORE, metadata={"help": "Energy estimate W/core."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the run (head + card) to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (never saved)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    report_to: list[str] = field(default_factory=list, metadata={"help": "none | tensorboard: <output_dir>/runs/."})

    def __post_init__(self):
        self.report_to = check_report_to(self.report_to)
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")


def make_parser():
    return configs.make_parser([DataArguments, LLMEmbedArguments, BaselineArguments, RunArguments])


def _prefixed(args, prefix: str) -> dict:
    """``--few_shot_max_test`` -> ``max_test=``: a baseline's arguments as its function's keyword arguments."""
    return {k.removeprefix(prefix): v for k, v in vars(args).items() if k.startswith(prefix)}


def main(data_args, model_args, base_args, run_args):
    configs.setup_logging()
    configure_threads()
    state = PartialState()
    if not state.is_main_process:  # see module docstring: nothing here is worth sharding
        state.wait_for_everyone()
        return None
    out, seed, m, b = Path(run_args.output_dir), run_args.seed, model_args, base_args
    random.seed(seed)

    # ---- Data ----
    train, val, test, names, where = load_splits(data_args, seed)
    sizes = {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])}
    logger.info("splits %s from %s, %d labels", sizes, where, len(names))

    # ---- Model ----
    # Frozen backbones -> pooled hidden states of several layers, extracted once (cached), one pass per text.
    spec = partial(ExtractionSpec, max_length=m.max_length, batch_size=m.extract_batch_size)
    specs = {"llm": spec(m.llm_model, list(m.llm_layers), m.llm_pooling)}
    if "llmembed_last_token" in m.variants:  # pooling ablation: the same forward passes, last real token
        specs["llm_last"] = spec(m.llm_model, list(m.llm_layers), "last")
    if m.encoder_model:
        specs["encoder"] = spec(m.encoder_model, [-1], m.encoder_pooling)
    feats, infos = extract_sources(specs, [train[0], val[0], test[0]], m.cache_dir or models.cache_dir() / "llmembed")
    costs = {name: extraction_cost(info) for name, info in infos.items()}
    params = {name: checkpoint_num_params(s.model) for name, s in specs.items()}

    # ---- Trainer ----
    # One fusion head per variant (LLMEmbed and its ablations), on that variant's views of the cached features.
    views, results, predictions, best = [{name: f[i] for name, f in feats.items()} for i in range(3)], [], {}, None

    # ---- Train ----
    for variant in m.variants:
        fit = le.fit_variant(variant, views, train[1], val[1], names, m, seed)
        if "tensorboard" in run_args.report_to:  # one run per variant, x axis = head epoch
            write_history(fit["fit"]["history"], out / "runs" / variant)
        results.append(cmp.head_result(variant, fit, le.VARIANT_SOURCES[variant], costs, params, sizes["train"]))
        predictions[variant] = [names[p] for p in fit["predictions"]]
        if variant == "llmembed" or best is None:
            best = (variant, fit)

    # ---- Evaluate ----
    # The baselines on the same splits, then every method scored on the same test rows.
    if b.run_encoder_baseline and m.encoder_model:
        tb_dir = str(out / "baselines" / "finetuned_encoder") if run_args.report_to else None
        result, predictions["finetuned_encoder"] = cmp.finetuned_encoder_result(
            m.encoder_model, train, test, names, params["encoder"], **_prefixed(b, "encoder_"), seed=seed,
            max_length=m.max_length, report_to=run_args.report_to, output_dir=tb_dir,
        )  # fmt: skip
        results.append(result)
    if b.run_few_shot:
        result, predictions["few_shot_prompt"], predictions["few_shot_raw"] = cmp.few_shot_result(
            m.llm_model, train, test, names, params["llm"], **_prefixed(b, "few_shot_"), seed=seed
        )
        results.append(result)
    state.wait_for_everyone()
    tables = cmp.build_tables(results, test[1], names, run_args.watts_per_core)
    rows = tables["all"]["rows"] if "all" in tables else []
    table = cmp.render_tables(tables, cmp.splits_preamble(where, sizes))

    # ---- Finish ----
    golds, dataset, (variant, fit) = [names[y] for y in test[1]], data_args.train_path or data_args.dataset, best
    extraction = {k: {s: vars(c) if isinstance(c, Cost) else c for s, c in v.items()} for k, v in costs.items()}
    metrics = {"dataset": dataset, "labels": names, "rows": rows, "tables": tables, "splits": where, "sizes": sizes,
               "extraction": extraction, "backbone_params": params, "head_history": fit["fit"]["history"],
               "watts_per_core": run_args.watts_per_core, "hub_url": None}  # fmt: skip
    cmp.plot_comparison(tables, out)
    reporting.plot_confusion_matrix(golds, predictions[variant], names, out / "confusion_matrix.png")
    le.save_head(fit["head"], out, extra={"extraction": {k: [s.model, s.layers, s.pooling] for k, s in specs.items()}})
    row = next(r for r in rows if r["method"] == variant)
    card = Card(m.llm_model, "classification", "llmembed", DESCRIPTION, f"llmembed-{variant}-{Path(dataset).stem}",
                [dataset], library_name=None, extra_sections={"Citation": citation_block(CITATION)})  # fmt: skip
    if "tensorboard" in run_args.report_to:  # the results table, every method, in the reported head's run
        epochs = len(fit["fit"]["history"])
        log_final_metrics({"test": {r["method"]: r for r in rows}}, log_dir=out / "runs" / variant, step=epochs)
    push = Push(run_args.hub_model_id if run_args.push_to_hub else None, run_args.hub_token, run_args.hub_private,
                ignore_patterns=(*DEFAULT_IGNORE_PATTERNS, "runs/*", "baselines/*"))  # fmt: skip
    done = finish_run(
        out, metrics=metrics, results_md=table, predictions=cmp.prediction_rows(test[0], golds, predictions),
        log_history=le.head_log_history(fit["fit"]["history"]), card=card, push=push,
        config={"data": data_args, "model": model_args, "baselines": base_args, "run": run_args},
        card_metrics={"test": {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}},
    )  # fmt: skip
    print(table)
    return {**metrics, "hub_url": done["hub_url"]}


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
