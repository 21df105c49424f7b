"""QLoRA multi-task fine-tuning: one causal LM for topic classification, intent detection and slot filling.

Zhao et al. 2024 ("Advancing Single- and Multi-task Text Classification through LLM Fine-tuning"), cheaply: the LM
is loaded in 4-bit NF4 with double quantization (fp32 compute on CPU, bf16 on CUDA), and a LoRA adapter is trained
with TRL's ``SFTTrainer`` on prompt-completion rows (loss on the answer) drawn from a weighted task mixture. The same
run trains the baselines on the same rows (one single-task model per task, an intent and a slot model for the joint
task, and a fine-tuned encoder; ``baseline_budget`` sets their steps) and writes one table with each row's compute.

Launch (on CPU, ``OMP_NUM_THREADS=1 python -m recipes.qlora_multitask --config ...`` works the same)::

    accelerate launch recipes/qlora_multitask.py --config recipes/configs/qlora_multitask/smollm2_cpu.yaml

    # several GPUs: one 4-bit copy per GPU (DDP), or the 4-bit weights sharded (QLoRA + FSDP)
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/qlora_multitask.py --config ...
    accelerate launch --config_file recipes/accelerate_configs/fsdp_qlora.yaml recipes/qlora_multitask.py \\
        --config recipes/configs/qlora_multitask/llama3_8b_gpu.yaml --bf16 true --bnb_4bit_quant_storage bfloat16

    # two CPU processes (gloo); a `use_cpu` config or `--cpu` silently starts ONE process:
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no recipes/qlora_multitask.py --config ...

``--quantization false`` = plain LoRA; ``--eval_split dev`` scores dev; ``--push_to_hub --hub_model_id me/x`` pushes
the adapter (``hub_push: merged``: the base reloaded in full precision with the adapter folded in, also written by
``--merge_adapter``). Writes the adapter, ``confusion_<task>.png`` and :data:`toolkit.run.ARTIFACTS`.
"""

import copy
import os
from dataclasses import dataclass, field, fields

from trl import SFTConfig

from toolkit import configs
from toolkit.baselines.multitask import run_baselines
from toolkit.configs import apply_cpu_safe_defaults, setup_logging
from toolkit.distributed import is_main_process, wait_for_everyone
from toolkit.methods.multitask import report
from toolkit.methods.multitask.card import CITATION, DESCRIPTION
from toolkit.methods.multitask.config import MultitaskConfig
from toolkit.methods.multitask.data import load_mixture_splits
from toolkit.methods.multitask.formats import evaluate
from toolkit.methods.multitask.mixture import build_mixture, dev_rows
from toolkit.models.loading import load_tokenizer
from toolkit.models.students import load_student, lora_config
from toolkit.publishing.export import publish_student
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.training.sft import (
    copy_card_to_merged,
    distributed_info,
    generation_model,
    merge_adapter,
    sft_trainer,
    train,
)
from toolkit.training.tracking import log_final_metrics, require_tensorboard, resume_checkpoint

# Left out of a Hub push of the adapter: the baselines' logs, the merged copy, checkpoints, TensorBoard runs.
PUSH_IGNORE = ["baselines/*", "merged/*", "checkpoint-*", "*.pt", "*.pth", "runs/*"]


@dataclass
class MultitaskArguments(MultitaskConfig):
    """The method's knobs (:class:`MultitaskConfig`, one flag each) and what to publish."""

    base_model_id: str | None = field(default=None, metadata={"help": "Hub id the adapter names as its base."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of model_name_or_path."})
    push_merged: bool = field(default=False, metadata={"help": "Push merged weights (as hub_push merged)."})
    merge_adapter: bool = field(default=False, metadata={"help": "Also save a merged full checkpoint in merged/."})
    hub_push: str = field(default="adapter", metadata={"help": "What --push_to_hub uploads: adapter | merged."})

    def __post_init__(self):
        super().__post_init__()
        if self.hub_push not in ("adapter", "merged"):
            raise ValueError(f"hub_push must be adapter or merged, got {self.hub_push!r}")

    def method_config(self) -> MultitaskConfig:
        """The method's config alone (what the library receives), a copy of these arguments' method fields."""
        return MultitaskConfig(**{knob.name: getattr(self, knob.name) for knob in fields(MultitaskConfig)})


def make_parser():
    """The recipe's parser: its own arguments, then TRL's ``SFTConfig``."""
    return configs.make_parser([MultitaskArguments, SFTConfig])


def card_sections(config: MultitaskConfig, mixture_info: dict) -> dict[str, str]:
    """The model card's own sections: the task mixture as drawn, and how the student was quantized."""
    counts = mixture_info["mixture_counts"]
    mixture = [
        f"- `{task}`: p={p:.3f}, {counts[task]} training rows drawn" for task, p in mixture_info["mixture"].items()
    ]
    if config.quantization:
        quantization = "4-bit NF4, double quantization (bitsandbytes), LoRA on top (QLoRA)"
    else:
        quantization = "none (LoRA on the full-precision model)"
    lora = f"LoRA r={config.lora_r}, alpha={config.lora_alpha}, targets={config.lora_target_modules}"
    return {"Tasks and mixture": "\n".join(mixture), "Quantization": f"{quantization}; {lora}"}


def main(script_args: MultitaskArguments, training_args: SFTConfig) -> dict:
    """Train the multi-task model and its baselines, score them all on the same rows, write (and push) the run."""
    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    config = script_args.method_config()
    training_args.resume_from_checkpoint = resume_checkpoint(training_args)  # only the multi-task model resumes
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # finish_run pushes, once, at the end
    if push and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    out = training_args.output_dir
    args = copy.deepcopy(training_args)  # the multi-task model's: the mixture sets its eval strategy

    # ---- Data ----
    tokenizer = load_tokenizer(config.model_name_or_path, revision=script_args.model_revision)
    splits, scored = load_mixture_splits(
        config.tasks,
        tokenizer,
        train_size=config.train_size,
        test_size=config.test_size,
        seed=config.split_seed,  # the training seed varies the mixture's draw and order, never the scored rows
        data_dir=config.data_dir,
        test_paths=config.test_path,
        dev_paths=config.dev_path,
        eval_split=config.eval_split,
        need_dev=config.dev_curve_rows > 0,
        max_text_tokens=config.max_text_tokens,
    )
    chat = bool(tokenizer.chat_template)
    mixture, mixture_info = build_mixture(
        splits,
        config.weights,
        args,
        strategy=config.mixture_strategy,
        temperature=config.mixture_temperature,
        use_chat=chat,
        max_listed_labels=config.max_listed_labels,
    )
    dev = None
    if config.dev_curve_rows > 0:
        dev = dev_rows(splits, config.dev_curve_rows, chat, config.max_listed_labels)
    else:
        args.eval_strategy = "no"

    # ---- Model ----
    model, _, _ = load_student(
        config.model_name_or_path,
        quantization=config.quantization_mode,
        quant_storage=config.bnb_4bit_quant_storage,
        gradient_checkpointing=bool(args.gradient_checkpointing),
        attach_lora=False,
        revision=script_args.model_revision,
    )
    peft_config = lora_config(
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
    )

    # ---- Trainer ----
    trainer = sft_trainer(model, tokenizer, args, mixture, eval_dataset=dev, peft_config=peft_config)

    # ---- Train ----
    info = train(trainer) | mixture_info

    # ---- Evaluate: every rank generates its share of the test rows, then the baselines ----
    with generation_model(trainer) as trained:
        results, predictions = evaluate(
            "multitask",
            trained,
            tokenizer,
            splits,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.eval_batch_size,
            constrained=config.constrained,
            max_listed_labels=config.max_listed_labels,
        )
    summary = {"multitask": {"train": info, "eval": results}, "scored": scored}
    summary["distributed"] = distributed_info(trainer)
    tables = report.Tables()
    name = "multi-task QLoRA (one model)" if config.quantization else "multi-task LoRA (one model)"
    tables.add_model("multitask", name, results, info, approach="multi-task")
    baselines = run_baselines(
        config=config, splits=splits, tokenizer=tokenizer, training_args=training_args, multitask_info=info
    )
    summary |= baselines.summary
    predictions += baselines.predictions
    tables.extend(baselines.tables)
    results_md = tables.finish(summary, scored, config.baseline_budget)

    # ---- Finish: every rank takes part in saving (FSDP gathers the weights), the main process writes ----
    trainer.save_model(out)
    if is_main_process():
        tokenizer.save_pretrained(out)
        report.plot_confusions(out, splits, predictions)
        merged = os.path.join(out, "merged")
        merged_push = push and (script_args.push_merged or script_args.hub_push == "merged")
        if script_args.merge_adapter and not merged_push:  # a merged push merges in publish_student below
            merge_adapter(out, config.model_name_or_path, merged)
        card = Card(
            base_model=config.model_name_or_path,
            task="text-classification",
            recipe="qlora_multitask",
            description=DESCRIPTION,
            model_name=training_args.hub_model_id,
            datasets=[sp.source for sp in splits],
            library_name="peft",
            extra_sections=card_sections(config, info),
        )
        card, push_folder = publish_student(
            out,
            card,
            training_args.hub_model_id or os.path.basename(os.path.normpath(out)),
            model_name_or_path=config.model_name_or_path,
            base_model_id=script_args.base_model_id,
            revision=script_args.model_revision,
            merge=merged_push,
            citation=CITATION,
        )
        card_metrics = {"multitask": {f"{task} {k}": v for task, m in results.items() for k, v in m.items()}}
        log_final_metrics(card_metrics, trainer=trainer)
        finish_run(
            out,
            metrics={key: value for key, value in summary.items() if key not in ("compute", "table", "validity")},
            tables={"results": summary["table"], "compute": summary["compute"], "validity": summary["validity"]},
            timings={"train_s": info["train_seconds"]},
            tokens=info["train_tokens"],
            results_md=results_md,
            predictions=predictions,
            log_history=trainer.state.log_history,
            config={"script_args": script_args, "training_args": training_args},
            card=card,
            card_metrics=card_metrics,
            push=Push(
                repo_id=training_args.hub_model_id if push else None,
                token=training_args.hub_token,
                private=bool(training_args.hub_private_repo),
                folder=push_folder if merged_push else None,
                ignore_patterns=PUSH_IGNORE,
            ),
        )
        if os.path.isdir(merged):
            copy_card_to_merged(out, merged)
        print(results_md)
    wait_for_everyone()
    return summary


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
