"""QLoRA multi-task fine-tuning: one causal LM for topic classification, intent detection and slot filling.

Reproduces the setup of Zhao et al. 2024 ("Advancing Single- and Multi-task Text Classification through LLM
Fine-tuning") cheaply: the LM is loaded in 4-bit NF4 with double quantization (bitsandbytes; fp32 compute on CPU,
bf16 on CUDA), prepared with ``prepare_model_for_kbit_training``, and a LoRA adapter is trained with TRL's
``SFTTrainer`` on prompt-completion data (loss on the answer only) drawn from a weighted task mixture. The same run
trains the baselines on the same rows — one single-task LoRA model per task (the joint intent+slots task is split
into an intent model and a slot model, the paper's two-model setup) and a fine-tuned encoder (``local:minilm-l6``,
the RoBERTa stand-in) — and writes one results table: strict accuracy as the headline (snapped accuracy labelled as
such), one macro-F1 definition for every model, and each row's training compute (steps, tokens, CPU-seconds).
``baseline_budget: per_model`` gives every baseline model the multi-task model's step budget (the baselines together
then cost 2-3× more); ``split_by_mixture`` / ``split_evenly`` make them share it (equal total budget).

Rows: official splits (SNIPS train/valid/test, 20NG train/test) unless ``--test_path`` / ``--dev_path`` (one file
per task, ``-`` = default) replace them; a split is carved from train only when neither exists (SLURP).
``--eval_split dev`` scores dev instead of test, for tuning.

Launch::

    accelerate launch recipes/qlora_multitask.py --config recipes/configs/qlora_multitask/smollm2_cpu.yaml

(on CPU: ``OMP_NUM_THREADS=1 python recipes/qlora_multitask.py --config ...`` works the same). ``--quantization
false`` falls back to plain LoRA; ``--push_to_hub --hub_model_id me/x`` pushes the adapter (or, with
``hub_push: merged``, the merged checkpoint). The merged checkpoint is built by reloading the base in full
precision and folding the adapter in (merging into 4-bit weights would re-quantize them).

Writes into ``output_dir``: adapter + tokenizer, ``metrics.json``, ``results.md``, ``predictions.jsonl``,
``training_curves.png``, ``confusion_<task>.png``, ``README.md`` (model card), ``config.json`` (secrets redacted),
optionally ``merged/``.
"""

# No `from __future__ import annotations`: tests load this script without registering it in sys.modules, and
# dataclasses must then see real (not string) annotations.
import copy
import json
import logging
import os
from dataclasses import dataclass, field

from trl import SFTConfig

from toolkit import multitask as mt
from toolkit import multitask_report as report
from toolkit.configs import apply_cpu_safe_defaults, redact, save_config, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.label_scoring import averaging_labels
from toolkit.multitask_baselines import run_encoder_baselines
from toolkit.report_artifacts import report_from_run_dir
from toolkit.runtime import configure_threads
from toolkit.tracking import require_tensorboard, resume_checkpoint
from toolkit.train_budget import BASELINE_BUDGETS, baseline_steps

logger = logging.getLogger(__name__)


@dataclass
class MultitaskArguments:
    """What to train on, how to quantize, which baselines to run."""

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={"help": "Causal LM (Llama family first)."})
    tasks: list[str] = field(
        default_factory=lambda: ["20ng:topic", "snips:intent_slots"],
        metadata={"help": "Mixture entries '<source>:<task>'; task in topic/intent/slots/intent_slots."},
    )
    task_weights: list[float] | None = field(default=None, metadata={"help": "One weight per task (default 1 each)."})
    mixture_strategy: str = field(default="weighted", metadata={"help": "weighted | proportional | temperature."})
    mixture_temperature: float = field(default=1.0, metadata={"help": "T for temperature sampling."})
    train_size: int = field(default=300, metadata={"help": "Train rows per task (subsample, -1 = all)."})
    test_path: list[str] | None = field(
        default=None,
        metadata={
            "help": "One test file per task (JSONL/CSV/TSV/Parquet, the loader's columns; '-' = the official test "
            "split, carved from train only when the source has none)."
        },
    )
    dev_path: list[str] | None = field(
        default=None, metadata={"help": "One dev file per task ('-' = the official dev split, else carved)."}
    )
    eval_split: str = field(
        default="test", metadata={"help": "Split the results table scores: test | dev (for tuning; never both)."}
    )
    test_size: int = field(default=200, metadata={"help": "Test rows per task (subsample, -1 = all)."})
    dev_curve_rows: int = field(
        default=0,
        metadata={
            "help": "Dev rows per task scored for the multi-task model's dev-loss curve every eval_steps (0 = no "
            "curve); with eval_strategy=steps."
        },
    )
    max_text_tokens: int = field(default=128, metadata={"help": "Truncate topic texts to this many LM tokens."})
    quantization: bool = field(default=True, metadata={"help": "4-bit NF4 + double quant (QLoRA); false = LoRA."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={"help": "LoRA targets."})
    baselines: list[str] = field(
        default_factory=lambda: ["single_task", "encoder"],
        metadata={"help": "Any of: single_task, encoder (or none)."},
    )
    baseline_budget: str = field(
        default="per_model",
        metadata={
            "help": "Training steps of the baseline models: per_model (each gets max_steps: the baselines together "
            "cost 2-3x the multi-task model) | split_by_mixture | split_evenly (the models share the multi-task "
            "model's total steps) | match_task_rows (each sees as many rows of its task as the multi-task model)."
        },
    )
    encoder_model: str = field(default="local:minilm-l6", metadata={"help": "Encoder baseline checkpoint."})
    encoder_learning_rate: float = field(default=1e-4, metadata={"help": "Encoder baseline learning rate."})
    label_decoding: str = field(
        default="constrained",
        metadata={
            "help": "constrained: the label field is decoded over the train label set (a token trie, so answers "
            "are always labels; scales past the 20 labels a prompt lists) | free: plain greedy decoding."
        },
    )
    max_new_tokens: int = field(default=48, metadata={"help": "Generation budget per answer."})
    eval_batch_size: int = field(default=16, metadata={"help": "Generation batch size."})
    merge_adapter: bool = field(default=False, metadata={"help": "Also save a merged full checkpoint in merged/."})
    hub_push: str = field(default="adapter", metadata={"help": "What --push_to_hub uploads: adapter | merged."})
    data_dir: str | None = field(default=None, metadata={"help": "Data root (default $TOOLKIT_DATA_DIR)."})

    def __post_init__(self):
        for spec in self.tasks:
            mt.parse_task_spec(spec)
        if not self.tasks:
            raise ValueError("tasks must name at least one '<source>:<task>'")
        if self.task_weights is not None and len(self.task_weights) != len(self.tasks):
            raise ValueError(f"{len(self.task_weights)} task_weights for {len(self.tasks)} tasks")
        if self.mixture_strategy not in mt.MIXTURE_STRATEGIES:
            raise ValueError(f"mixture_strategy must be one of {mt.MIXTURE_STRATEGIES}")
        self.baselines = [b for b in self.baselines if b != "none"]  # `--baselines none` turns them all off
        unknown = set(self.baselines) - {"single_task", "encoder"}
        if unknown:
            raise ValueError(f"unknown baselines {sorted(unknown)}; expected single_task / encoder")
        for name in ("test_path", "dev_path"):
            paths = getattr(self, name)
            if paths is not None and len(paths) != len(self.tasks):
                raise ValueError(f"{len(paths)} {name} entries for {len(self.tasks)} tasks (use '-' for the default)")
        if self.eval_split not in ("test", "dev"):
            raise ValueError("eval_split must be 'test' or 'dev'")
        if self.baseline_budget not in BASELINE_BUDGETS:
            raise ValueError(f"baseline_budget must be one of {BASELINE_BUDGETS}")
        if self.label_decoding not in ("constrained", "free"):
            raise ValueError("label_decoding must be 'constrained' or 'free'")
        if self.hub_push not in ("adapter", "merged"):
            raise ValueError("hub_push must be 'adapter' or 'merged'")


def make_parser():
    return _make_parser([MultitaskArguments, SFTConfig])


def _evaluate(name, model, tokenizer, splits, script_args):
    """Generate + score every task of ``splits`` with one model; returns ({task: metrics}, prediction rows)."""
    results, rows = {}, []
    for sp in splits:
        prompts = [mt.build_prompt(sp.task, r, sp.labels) for r in sp.test]
        outputs, gen = mt.generate_answers(
            model,
            tokenizer,
            prompts,
            max_new_tokens=script_args.max_new_tokens,
            batch_size=script_args.eval_batch_size,
            task=sp.task,
            labels=sp.labels if script_args.label_decoding == "constrained" else None,
        )
        metrics, preds = mt.score_task(sp.task, list(sp.test), outputs, sp.labels)
        results[sp.name] = metrics | {
            "infer_seconds": gen["seconds"],
            "gen_tokens_per_second": gen["tokens_per_second"],
        }
        rows += [{"model": name, "task": sp.name} | p for p in preds]
        logger.info("%s on %s: %s", name, sp.name, {k: v for k, v in metrics.items() if isinstance(v, float)})
    return results, rows


def _train_one(name, train_splits, eval_splits, script_args, training_args, tokenizer, output_dir, max_steps=None):
    """Train one LoRA model on the mixture of ``train_splits`` and evaluate it on ``eval_splits``."""
    args = copy.deepcopy(training_args)
    if max_steps is not None:  # equal-total-budget baselines: this model's share of the multi-task steps
        args.max_steps = max_steps
    if output_dir != training_args.output_dir:  # baselines: metrics only, no checkpoints on disk
        args.output_dir, args.save_strategy, args.resume_from_checkpoint = output_dir, "no", None
    chat = bool(tokenizer.chat_template)
    datasets = {sp.name: mt.to_prompt_completion(sp, sp.train, use_chat=chat) for sp in train_splits}
    weights = dict(zip(script_args.tasks, script_args.task_weights or [1.0] * len(script_args.tasks)))
    probs = mt.mixture_probabilities(
        {k: len(v) for k, v in datasets.items()},
        {sp.name: weights.get(sp.spec, 1.0) for sp in train_splits},
        script_args.mixture_strategy,
        script_args.mixture_temperature,
    )
    world = max(1, args.world_size)
    steps = args.max_steps if args.max_steps > 0 else None
    n = (steps or 0) * args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    mixture = mt.sample_mixture(datasets, probs, n or sum(len(d) for d in datasets.values()), seed=args.seed)
    dev = None
    if name == "multitask" and script_args.dev_curve_rows > 0:  # where the dev curve flattens sets the step budget
        dev = _concat(
            mt.to_prompt_completion(sp, sp.dev.select(range(min(script_args.dev_curve_rows, len(sp.dev)))), chat)
            for sp in train_splits
        )
    else:
        args.eval_strategy = "no"
    trainer, info = mt.train_lora_sft(
        script_args.model_name_or_path,
        mixture,
        args,
        eval_dataset=dev,
        quantization=script_args.quantization,
        lora_r=script_args.lora_r,
        lora_alpha=script_args.lora_alpha,
        lora_dropout=script_args.lora_dropout,
        target_modules=script_args.lora_target_modules,
    )
    results, rows = _evaluate(name, trainer.model, tokenizer, eval_splits, script_args)
    info |= {"mixture": probs, "mixture_counts": {k: mixture["task"].count(k) for k in datasets}}
    return trainer, info, results, rows


def main(script_args: MultitaskArguments, training_args: SFTConfig):
    from toolkit import reporting
    from toolkit.hub import push_to_hub, render_model_card
    from toolkit.models import load_tokenizer

    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    # Resolved here (`true` = the latest checkpoint in output_dir); only the multi-task model has checkpoints.
    training_args.resume_from_checkpoint = resume_checkpoint(training_args)
    push, training_args.push_to_hub = training_args.push_to_hub, False  # we push ourselves, once, at the end
    if push and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    out = training_args.output_dir
    os.makedirs(out, exist_ok=True)
    is_main = training_args.process_index == 0

    # ---- Tokenizer ----
    tokenizer = load_tokenizer(script_args.model_name_or_path)

    # ---- Data ----
    splits, scored = [], {}
    for i, spec in enumerate(script_args.tasks):
        test_path, dev_path = (
            None if paths is None or paths[i] in ("-", "") else paths[i]
            for paths in (script_args.test_path, script_args.dev_path)
        )
        sp = mt.load_task_splits(
            spec,
            train_size=script_args.train_size,
            test_size=script_args.test_size,
            seed=training_args.seed,
            data_dir=script_args.data_dir,
            test_path=test_path,
            dev_path=dev_path,
            need_dev=script_args.eval_split == "dev" or script_args.dev_curve_rows > 0,
        )
        sp.spec = spec
        if script_args.eval_split == "dev":  # every model below scores sp.test: point it at dev
            sp.test = sp.dev
        if sp.task == "topic":  # cut long posts on the text, so answers are never truncated away
            for part in ("train", "test", "dev"):
                ds = getattr(sp, part)
                if ds is None:
                    continue
                texts = mt.truncate_texts(ds["text"], tokenizer, script_args.max_text_tokens)
                setattr(sp, part, ds.remove_columns("text").add_column("text", texts))
        scored[sp.name] = f"{len(sp.test)} rows of {sp.origin[script_args.eval_split]}; train {sp.origin['train']}"
        logger.info("%s: %d train / %d %s rows", sp.name, len(sp.train), len(sp.test), script_args.eval_split)
        splits.append(sp)

    # ---- Model + Trainer + Train + Evaluate: the multi-task model ----
    trainer, info, results, pred_rows = _train_one(
        "multitask", splits, splits, script_args, training_args, tokenizer, out
    )
    mt_name = "multi-task QLoRA (one model)" if script_args.quantization else "multi-task LoRA (one model)"
    table = [report.headline_row(mt_name, results, report.compute_of(info))]
    totals = [{"approach": "multi-task", "models": 1} | report.compute_of(info)]
    validity = report.validity_rows("multitask", results)
    summary = {"multitask": {"train": info, "eval": results}, "scored": scored}

    # ---- Baselines (same rows; steps per model set by baseline_budget) ----
    steps = baseline_steps(script_args.baseline_budget, info["train_steps"], splits, info["mixture"])
    summary["baseline_budget"] = {"mode": script_args.baseline_budget, "steps_per_model": steps}
    if "single_task" in script_args.baselines:
        single_infos = []
        for sp in splits:
            # The joint task's single-task baseline is the paper's two-model setup: an intent and a slot model.
            parts = [sp] if sp.task != "intent_slots" else [_as_task(sp, "intent"), _as_task(sp, "slots")]
            merged_results, infos, by_task = {}, [], {}
            for part in parts:
                name = f"single:{part.name}"
                run_dir = os.path.join(out, "baselines", name.replace(":", "_"))
                _, b_info, b_res, b_rows = _train_one(
                    name, [part], [part], script_args, training_args, tokenizer, run_dir, (steps or {}).get(part.name)
                )
                summary[name] = {"train": b_info, "eval": b_res}
                pred_rows += b_rows
                validity += report.validity_rows(name, b_res)
                by_task[part.task] = b_rows
                merged_results[sp.name] = merged_results.get(sp.name, {}) | b_res[part.name]
                infos.append(b_info)
            if sp.task == "intent_slots":
                merged_results[sp.name]["exact_match"] = mt.two_model_exact_match(by_task["intent"], by_task["slots"])
                summary[f"single:{sp.name}:two_model_exact_match"] = merged_results[sp.name]["exact_match"]
            label = ("single-task QLoRA" if script_args.quantization else "single-task LoRA") + (
                " x2 (intent model + slot model)" if len(parts) == 2 else ""
            )
            table.append(report.headline_row(f"{label}: {sp.name}", merged_results, report.compute_of(*infos)))
            single_infos += infos
        totals.append({"approach": "single-task LoRA (all)", "models": len(single_infos)})
        totals[-1] |= report.compute_of(*single_infos)
    if "encoder" in script_args.baselines:
        enc = run_encoder_baselines(
            script_args.encoder_model, splits, training_args, script_args.encoder_learning_rate, steps=steps
        )
        summary["encoder"] = enc["summary"]
        pred_rows += enc["predictions"]
        enc_compute = report.compute_of(*enc["results"].values())
        validity += report.validity_rows("encoder", enc["results"])
        table.append(
            report.headline_row(f"encoder {script_args.encoder_model} (seq + token cls)", enc["results"], enc_compute)
        )
        n_enc = sum(1 + (sp.task == "intent_slots") for sp in splits)
        totals.append({"approach": f"encoder {script_args.encoder_model}", "models": n_enc} | enc_compute)
    summary["compute"] = report.compute_totals(totals, "multi-task")
    summary["table"], summary["validity"] = table, validity  # results drivers merge tables across runs
    budget_note = {
        "per_model": "baseline_budget=per_model: every baseline model trains the multi-task model's full step budget",
        "split_by_mixture": "baseline_budget=split_by_mixture: each family of baseline models shares the multi-task "
        "model's total steps by its task mixture",
        "split_evenly": "baseline_budget=split_evenly: each family of baseline models shares the multi-task model's "
        "total steps evenly",
        "match_task_rows": "baseline_budget=match_task_rows: each baseline model trains as many rows of its task as "
        "the multi-task model saw (equal per-task budget)",
    }[script_args.baseline_budget]

    # ---- Save / push ----
    if not is_main:
        return summary
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    reporting.write_metrics(out, summary)
    results_md = report.render_results(table, summary["compute"], validity, scored, budget_note)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(results_md)
    reporting.write_jsonl(os.path.join(out, "predictions.jsonl"), pred_rows)
    reporting.plot_training_curves(trainer.state.log_history, os.path.join(out, "training_curves.png"))
    for sp in splits:
        if sp.task in ("topic", "intent", "intent_slots"):
            rows = [r for r in pred_rows if r["model"] == "multitask" and r["task"] == sp.name]
            golds = [r["gold"] for r in rows]
            reporting.plot_confusion_matrix(  # strict labels: invalid answers land in the "other" column
                golds,
                [r["label"] for r in rows],
                averaging_labels(sp.labels, golds),
                os.path.join(out, f"confusion_{sp.name.replace(':', '_')}.png"),
            )
    save_config(os.path.join(out, "config.json"), script_args=script_args, training_args=training_args)
    card = render_model_card(
        model_name=(training_args.hub_model_id or os.path.basename(os.path.abspath(out))),
        base_model=script_args.model_name_or_path,
        task="text-classification",
        recipe="qlora_multitask",
        metrics={"multitask": {f"{t} {k}": v for t, m in results.items() for k, v in m.items()}},
        # JSON round trip: TrainingArguments hold str-Enums (IntervalStrategy...) that yaml.safe_dump rejects.
        training_config=json.loads(json.dumps(redact({"script_args": script_args, "training_args": training_args}))),
        datasets=[sp.source for sp in splits],
        library_name="peft",
        extra_sections={
            "Tasks and mixture": "\n".join(
                f"- `{k}`: p={v:.3f}, {info['mixture_counts'][k]} training rows drawn"
                for k, v in info["mixture"].items()
            ),
            "Quantization": (
                "4-bit NF4, double quantization (bitsandbytes), LoRA on top (QLoRA)"
                if script_args.quantization
                else "none (LoRA on the full-precision model)"
            )
            + f"; LoRA r={script_args.lora_r}, alpha={script_args.lora_alpha}, targets={script_args.lora_target_modules}",
            "Results (same rows; compute per row)": results_md,
        },
    )
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(card)
    report_from_run_dir(out)  # report.html: tables, curves, sample rows, lineage, command
    if script_args.merge_adapter or (push and script_args.hub_push == "merged"):
        merged = mt.merge_adapter(out, script_args.model_name_or_path, os.path.join(out, "merged"))
        with open(os.path.join(merged, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(card.replace("library_name: peft", "library_name: transformers"))
    if push:
        folder = os.path.join(out, "merged") if script_args.hub_push == "merged" else out
        url = push_to_hub(
            folder,
            training_args.hub_model_id,
            token=training_args.hub_token,
            private=bool(training_args.hub_private_repo),
            ignore_patterns=["baselines/*", "merged/*", "checkpoint-*", "*.pt", "*.pth", "runs/*"],
        )
        logger.info("Pushed %s to %s", script_args.hub_push, url)
    print(results_md)
    return summary


def _concat(datasets):
    from datasets import concatenate_datasets

    return concatenate_datasets(list(datasets))


def _as_task(sp, task):
    """A copy of a joint intent+slots split retargeted to ``task`` (same rows)."""
    part = copy.copy(sp)
    part.task, part.name = task, f"{sp.name.rsplit(':', 1)[0]}:{task}"
    part.labels = sp.labels if task == "intent" else None
    return part


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
