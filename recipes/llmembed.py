"""LLMEmbed (Liu et al., ACL 2024): classify with fused multi-layer hidden states of a small LLM + an encoder.

    accelerate launch recipes/llmembed.py --config recipes/configs/llmembed/sst2.yaml
    python -m recipes.llmembed --config recipes/configs/llmembed/sst2.yaml

One run = one dataset, one set of splits (``toolkit.tasks.classification_splits``) and every method on them:
LLMEmbed and its ablations (``--variants``), a fine-tuned encoder and the same LLM prompted few-shot. Costs are wall
and process CPU seconds and an energy estimate (CPU-s × ``watts_per_core``), model loading excluded; cached features
are charged the extraction that built them. Every row of a table is scored on the same test rows
(``toolkit.methods.llmembed.comparison``). The run directory holds the fused head (``model.safetensors`` + ``head_config.json``).

Several processes (``accelerate launch --multi_gpu --num_processes N``; two CPU processes: README → Recipes) give the
same tables as one: the frozen backbones' embeddings are extracted in shards across the ranks and gathered in order,
the encoder baseline trains data-parallel on the same global batch, the few-shot prompts are sharded; the fusion
heads (seconds of CPU on cached features) train once, on the main process, while the others wait; only the main
process writes the run directory and pushes. ``metrics.json`` records what ran under ``"distributed"``.
"""

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState

from toolkit import configs
from toolkit.distributed import is_main_process, wait_for_everyone
from toolkit.meter import DEFAULT_WATTS_PER_CORE, Cost
from toolkit.methods.llmembed import comparison
from toolkit.methods.llmembed.card import CITATION, DESCRIPTION
from toolkit.methods.llmembed.config import VARIANT_SOURCES, LLMEmbedConfig
from toolkit.methods.llmembed.embeddings import checkpoint_num_params, extraction_specs
from toolkit.methods.llmembed.feature_cache import extract_sources, extraction_cost
from toolkit.methods.llmembed.head import fit_variant, head_log_history, save_head
from toolkit.publishing import reporting
from toolkit.publishing.cards import citation_block
from toolkit.publishing.hub import DEFAULT_IGNORE_PATTERNS
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import cache_dir, configure_threads
from toolkit.tasks.classification_splits import DataArguments, load_splits
from toolkit.training.tracking import check_report_to, log_final_metrics, write_history

logger = logging.getLogger("recipes.llmembed")


@dataclass
class BaselineArguments:
    run_encoder_baseline: bool = field(default=True, metadata={"help": "Fine-tune encoder_model as a classifier."})
    encoder_epochs: float = field(default=3.0, metadata={"help": "Fine-tuning epochs."})
    encoder_learning_rate: float = field(default=5e-5, metadata={"help": "Fine-tuning learning rate."})
    encoder_batch_size: int = field(default=16, metadata={"help": "Fine-tuning global batch size."})
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
    return configs.make_parser([DataArguments, LLMEmbedConfig, BaselineArguments, RunArguments])


def train_heads(config: LLMEmbedConfig, views: list[dict], train, val, names, run_args: RunArguments) -> dict:
    """One fusion head per variant (LLMEmbed and its ablations) on that variant's views: ``{variant: fit}``."""
    fits = {}
    for variant in config.variants:
        fits[variant] = fit_variant(variant, views, train[1], val[1], names, config, run_args.seed)
        if "tensorboard" in run_args.report_to:  # one run per variant, x axis = head epoch
            write_history(fits[variant]["fit"]["history"], Path(run_args.output_dir) / "runs" / variant)
    return fits


def run_baselines(
    config: LLMEmbedConfig, base_args: BaselineArguments, run_args: RunArguments, *, train, test, names, params, device
) -> tuple[list, dict, dict]:
    """The fine-tuned encoder and few-shot prompting on the same splits (every rank takes part).

    Returns:
        ``(results, {method: predicted label names}, the encoder fine-tuning's own results or {})``.
    """
    results, predictions, finetuned = [], {}, {}
    # Prompting first: under ZeRO-3 a model loaded after the encoder's Trainer started could come up partitioned.
    if base_args.run_few_shot:
        result, predictions["few_shot_prompt"], predictions["few_shot_raw"] = comparison.few_shot_result(
            config.llm_model,
            train,
            test,
            names,
            params["llm"],
            per_class=base_args.few_shot_per_class,
            max_test=base_args.few_shot_max_test,
            max_new_tokens=base_args.few_shot_max_new_tokens,
            max_chars=base_args.few_shot_max_chars,
            batch_size=base_args.few_shot_batch_size,
            seed=run_args.seed,
            device=device,
        )
        results.append(result)
    if base_args.run_encoder_baseline and config.encoder_model:
        tensorboard_dir = str(Path(run_args.output_dir) / "baselines" / "finetuned_encoder")
        result, predictions["finetuned_encoder"], finetuned = comparison.finetuned_encoder_result(
            config.encoder_model,
            train,
            test,
            names,
            params["encoder"],
            epochs=base_args.encoder_epochs,
            learning_rate=base_args.encoder_learning_rate,
            batch_size=base_args.encoder_batch_size,
            seed=run_args.seed,
            max_length=config.max_length,
            report_to=run_args.report_to,
            output_dir=tensorboard_dir if run_args.report_to else None,
        )
        results.append(result)
    return results, predictions, finetuned


def distributed_record(state: PartialState, wrapper: str | None) -> dict:
    """What ran: the launch's distributed type, its process count, and the class wrapping the trained encoder."""
    return {"distributed_type": state.distributed_type.value, "num_processes": state.num_processes, "wrapper": wrapper}


def main(data_args: DataArguments, config: LLMEmbedConfig, base_args: BaselineArguments, run_args: RunArguments):
    configs.setup_logging()
    configure_threads()
    state = PartialState()
    out = Path(run_args.output_dir)
    random.seed(run_args.seed)

    # ---- Data ----
    # Every rank draws the same seeded splits.
    train, val, test, names, where = load_splits(data_args, run_args.seed)
    sizes = {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])}
    logger.info("splits %s from %s, %d labels", sizes, where, len(names))

    # ---- Model ----
    # Frozen backbones -> pooled hidden states of several layers, one pass per text, sharded across the ranks, cached.
    specs = extraction_specs(config)
    features, infos = extract_sources(
        specs, [train[0], val[0], test[0]], config.cache_dir or cache_dir() / "llmembed", device=str(state.device)
    )
    costs = {name: extraction_cost(info) for name, info in infos.items()}
    params = {name: checkpoint_num_params(spec.model) for name, spec in specs.items()}
    if config.encoder_model and "encoder" not in params:  # the encoder baseline's size
        params["encoder"] = checkpoint_num_params(config.encoder_model)

    # ---- Trainer ----
    # One view set per split; the heads read the views of their variant's sources only.
    views = [{name: split_features[i] for name, split_features in features.items()} for i in range(3)]

    # ---- Train ----
    # The heads (seconds of CPU on the gathered features) train once, on the main process; the others wait.
    fits = train_heads(config, views, train, val, names, run_args) if is_main_process() else {}
    wait_for_everyone()

    # ---- Evaluate ----
    # The baselines on the same splits, then every method scored on the same test rows.
    baselines, predictions, finetuned = run_baselines(
        config, base_args, run_args, train=train, test=test, names=names, params=params, device=str(state.device)
    )
    if not is_main_process():
        wait_for_everyone()
        return None
    results = [
        comparison.head_result(variant, fit, VARIANT_SOURCES[variant], costs, params, sizes["train"])
        for variant, fit in fits.items()
    ]
    predictions = {**{variant: [names[p] for p in fit["predictions"]] for variant, fit in fits.items()}, **predictions}
    tables = comparison.build_tables([*results, *baselines], test[1], names, run_args.watts_per_core)
    rows = tables["all"]["rows"] if "all" in tables else []
    table = comparison.render_tables(tables, comparison.splits_preamble(where, sizes))

    # ---- Finish ----
    # The saved head is the fused model (or the first variant run); the main process writes and pushes.
    variant = "llmembed" if "llmembed" in fits else config.variants[0]
    fit = fits[variant]
    golds = [names[y] for y in test[1]]
    dataset = data_args.train_path or data_args.dataset
    extraction = {name: {k: vars(v) if isinstance(v, Cost) else v for k, v in c.items()} for name, c in costs.items()}
    metrics = {
        "dataset": dataset,
        "labels": names,
        "splits": where,
        "sizes": sizes,
        "extraction": extraction,
        "backbone_params": params,
        "head_history": fit["fit"]["history"],
        "watts_per_core": run_args.watts_per_core,
        "distributed": distributed_record(state, finetuned.get("wrapper")),
        "hub_url": None,
    }
    comparison.plot_comparison(tables, out)
    reporting.plot_confusion_matrix(golds, predictions[variant], names, out / "confusion_matrix.png")
    extraction_specs_saved = {name: [spec.model, spec.layers, spec.pooling] for name, spec in specs.items()}
    save_head(fit["head"], out, extra={"extraction": extraction_specs_saved})
    row = next(r for r in rows if r["method"] == variant)
    card = Card(
        base_model=config.llm_model,
        task="classification",
        recipe="llmembed",
        description=DESCRIPTION,
        model_name=f"llmembed-{variant}-{Path(dataset).stem}",
        datasets=[dataset],
        library_name=None,
        extra_sections={"Citation": citation_block(CITATION)},
    )
    if "tensorboard" in run_args.report_to:  # the results table, every method, in the reported head's run
        epochs = len(fit["fit"]["history"])
        log_final_metrics({"test": {r["method"]: r for r in rows}}, log_dir=out / "runs" / variant, step=epochs)
    push = Push(
        repo_id=run_args.hub_model_id if run_args.push_to_hub else None,
        token=run_args.hub_token,
        private=run_args.hub_private,
        ignore_patterns=(*DEFAULT_IGNORE_PATTERNS, "runs/*", "baselines/*"),
    )
    done = finish_run(
        out,
        metrics=metrics,
        tables={"results": rows, **{name: table["rows"] for name, table in tables.items() if name != "all"}},
        results_md=table,
        predictions=comparison.prediction_rows(test[0], golds, predictions),
        prediction_columns={"input": "text", "prediction": variant, "reference": "gold"},
        watts_per_core=run_args.watts_per_core,
        log_history=head_log_history(fit["fit"]["history"]),
        card=card,
        push=push,
        config={"data": data_args, "model": config, "baselines": base_args, "run": run_args},
        card_metrics={"test": {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}},
    )
    wait_for_everyone()
    print(table)
    return {**done["record"], "hub_url": done["hub_url"]}


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
