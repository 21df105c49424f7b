"""QLoRA multi-task fine-tuning: one causal LM for topic classification, intent detection and slot filling.

Zhao et al. 2024 ("Advancing Single- and Multi-task Text Classification through LLM Fine-tuning"), cheaply: the LM
is loaded in 4-bit NF4 with double quantization (fp32 compute on CPU, bf16 on CUDA), and a LoRA adapter is trained
with TRL's ``SFTTrainer`` on prompt-completion rows (loss on the answer) drawn from a weighted task mixture. The same
run trains the baselines on the same rows (one single-task model per task, an intent and a slot model for the joint
task, and a fine-tuned encoder; ``baseline_budget`` sets their steps) and writes one table with each row's compute.

Launch (on CPU, ``OMP_NUM_THREADS=1 python recipes/qlora_multitask.py --config ...`` works the same)::

    accelerate launch recipes/qlora_multitask.py --config recipes/configs/qlora_multitask/smollm2_cpu.yaml

``--quantization false`` = plain LoRA; ``--eval_split dev`` scores dev; ``--push_to_hub --hub_model_id me/x`` pushes
the adapter (``hub_push: merged``: the base reloaded in full precision with the adapter folded in, also written by
``--merge_adapter``). Writes the adapter, ``confusion_<task>.png`` and :data:`toolkit.run.ARTIFACTS`.
"""

# No `from __future__ import annotations`: tests load this script without registering it in sys.modules, and
# dataclasses must then see real (not string) annotations.
import copy
import os
from dataclasses import dataclass, field

from trl import SFTConfig

from toolkit.baselines.multitask import load_lora_student, run_baselines
from toolkit.configs import apply_cpu_safe_defaults, setup_logging
from toolkit.configs import make_parser as _make_parser
from toolkit.methods.multitask import formats as mt
from toolkit.methods.multitask import report
from toolkit.methods.multitask.data import load_mixture_splits, parse_task_spec
from toolkit.methods.multitask.mixture import MIXTURE_STRATEGIES, build_mixture, dev_rows
from toolkit.models.loading import load_tokenizer
from toolkit.publishing.export import publish_student
from toolkit.run import Card, Push, finish_run
from toolkit.runtime import configure_threads
from toolkit.training.budget import BASELINE_BUDGETS
from toolkit.training.sft import copy_card_to_merged, merge_adapter, sft_trainer, train
from toolkit.training.tracking import log_final_metrics, require_tensorboard, resume_checkpoint

H = "help"
CITATION = """@misc{zhao2024advancing,
  title = {Advancing Single- and Multi-task Text Classification through Large Language Model Fine-tuning},
  author = {Zhao, Hang and Chen, Qile P. and Zhang, Yijing Barry and Yang, Gang},
  year = {2024},
  eprint = {2412.08587},
  archivePrefix = {arXiv}
}
@inproceedings{dettmers2023qlora,
  title = {{QLoRA}: Efficient Finetuning of Quantized {LLMs}},
  author = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {36},
  year = {2023}
}"""
DESCRIPTION = (
    "One causal LM fine-tuned with a 4-bit NF4 + LoRA (QLoRA) adapter on a weighted mixture of classification, "
    "intent and slot-filling tasks, each an instruction with a parseable answer (Zhao et al. 2024)."
)


@dataclass
class MultitaskArguments:
    """What to train on, how to quantize, which baselines to run."""

    model_name_or_path: str = field(default="local:smollm2-135m", metadata={H: "Causal LM (Llama family first)."})
    base_model_id: str | None = field(default=None, metadata={H: "Hub id the adapter names as its base."})
    model_revision: str | None = field(default=None, metadata={H: "Hub revision of model_name_or_path."})
    push_merged: bool = field(default=False, metadata={H: "Push merged weights (as hub_push merged)."})
    tasks: list[str] = field(
        default_factory=lambda: ["20ng:topic", "snips:intent_slots"],
        metadata={H: "Mixture entries '<source>:<task>'; task in topic/intent/slots/intent_slots."},
    )
    task_weights: list[float] | None = field(default=None, metadata={H: "One weight per task (default 1 each)."})
    mixture_strategy: str = field(default="weighted", metadata={H: "weighted | proportional | temperature."})
    mixture_temperature: float = field(default=1.0, metadata={H: "T for temperature sampling."})
    train_size: int = field(default=300, metadata={H: "Train rows per task (subsample, -1 = all)."})
    test_path: list[str] | None = field(default=None, metadata={H: "One test file per task ('-' = official/carved)."})
    dev_path: list[str] | None = field(default=None, metadata={H: "One dev file per task ('-' = official/carved)."})
    eval_split: str = field(default="test", metadata={H: "Split the table scores: test | dev (for tuning)."})
    test_size: int = field(default=200, metadata={H: "Test rows per task (subsample, -1 = all)."})
    dev_curve_rows: int = field(default=0, metadata={H: "Dev rows per task for the dev-loss curve (0 = none)."})
    max_text_tokens: int = field(default=128, metadata={H: "Truncate topic texts to this many LM tokens."})
    quantization: bool = field(default=True, metadata={H: "4-bit NF4 + double quant (QLoRA); false = LoRA."})
    lora_r: int = field(default=16, metadata={H: "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={H: "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={H: "LoRA dropout."})
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={H: "LoRA targets."})
    baselines: list[str] = field(
        default_factory=lambda: ["single_task", "encoder"], metadata={H: "Any of: single_task, encoder (or none)."}
    )
    baseline_budget: str = field(default="per_model", metadata={H: f"Baseline steps: {' | '.join(BASELINE_BUDGETS)}."})
    encoder_model: str = field(default="local:minilm-l6", metadata={H: "Encoder baseline checkpoint."})
    encoder_learning_rate: float = field(default=1e-4, metadata={H: "Encoder baseline learning rate."})
    label_decoding: str = field(default="constrained", metadata={H: "constrained (label trie) | free (greedy)."})
    max_new_tokens: int = field(default=48, metadata={H: "Generation budget per answer."})
    eval_batch_size: int = field(default=16, metadata={H: "Generation batch size."})
    merge_adapter: bool = field(default=False, metadata={H: "Also save a merged full checkpoint in merged/."})
    hub_push: str = field(default="adapter", metadata={H: "What --push_to_hub uploads: adapter | merged."})
    data_dir: str | None = field(default=None, metadata={H: "Data root (default $TOOLKIT_DATA_DIR)."})

    def __post_init__(self):
        for spec in self.tasks:
            parse_task_spec(spec)
        if not self.tasks:
            raise ValueError("tasks must name at least one '<source>:<task>'")
        if self.task_weights is not None and len(self.task_weights) != len(self.tasks):
            raise ValueError(f"{len(self.task_weights)} task_weights for {len(self.tasks)} tasks")
        self.baselines = [b for b in self.baselines if b != "none"]  # `--baselines none` turns them all off
        if set(self.baselines) - {"single_task", "encoder"}:
            raise ValueError(f"unknown baselines {self.baselines}; expected single_task / encoder")
        for name in ("test_path", "dev_path"):
            if getattr(self, name) is not None and len(getattr(self, name)) != len(self.tasks):
                raise ValueError(f"{name} entries must be one per task ('-' = the default)")
        choices = {
            "mixture_strategy": MIXTURE_STRATEGIES,
            "eval_split": ("test", "dev"),
            "hub_push": ("adapter", "merged"),
        }
        choices |= {"baseline_budget": BASELINE_BUDGETS, "label_decoding": ("constrained", "free")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}")


def make_parser():
    return _make_parser([MultitaskArguments, SFTConfig])


def main(script_args: MultitaskArguments, training_args: SFTConfig):
    setup_logging()
    configure_threads()
    apply_cpu_safe_defaults(training_args)
    require_tensorboard(training_args.report_to)
    training_args.resume_from_checkpoint = resume_checkpoint(training_args)  # only the multi-task model resumes
    push, training_args.push_to_hub = training_args.push_to_hub, False  # finish_run pushes, once, at the end
    if push and not training_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id")
    out, sa, args = training_args.output_dir, script_args, copy.deepcopy(training_args)

    # ---- Data ----
    tokenizer = load_tokenizer(sa.model_name_or_path, revision=sa.model_revision)
    splits, scored = load_mixture_splits(
        sa.tasks, tokenizer, train_size=sa.train_size, test_size=sa.test_size, seed=args.seed, data_dir=sa.data_dir,
        test_paths=sa.test_path, dev_paths=sa.dev_path, eval_split=sa.eval_split, need_dev=sa.dev_curve_rows > 0,
        max_text_tokens=sa.max_text_tokens,
    )  # fmt: skip
    chat = bool(tokenizer.chat_template)
    weights = dict(zip(sa.tasks, sa.task_weights or [1.0] * len(sa.tasks)))
    mixture, mix_info = build_mixture(
        splits, weights, args, strategy=sa.mixture_strategy, temperature=sa.mixture_temperature, use_chat=chat
    )
    dev = dev_rows(splits, sa.dev_curve_rows, chat) if sa.dev_curve_rows > 0 else None  # sets the step budget
    args.eval_strategy = args.eval_strategy if dev is not None else "no"

    # ---- Model ----
    model, peft_config = load_lora_student(sa, args)

    # ---- Trainer ----
    trainer = sft_trainer(model, tokenizer, args, mixture, eval_dataset=dev, peft_config=peft_config)

    # ---- Train ----
    info = train(trainer) | mix_info

    # ---- Evaluate ----
    gen = {"max_new_tokens": sa.max_new_tokens, "batch_size": sa.eval_batch_size}
    results, predictions = mt.evaluate(
        "multitask", trainer.model, tokenizer, splits, constrained=sa.label_decoding == "constrained", **gen
    )
    summary, tables = {"multitask": {"train": info, "eval": results}, "scored": scored}, report.Tables()
    name = "multi-task QLoRA (one model)" if sa.quantization else "multi-task LoRA (one model)"
    tables.add_model("multitask", name, results, info, approach="multi-task")
    run_baselines(splits, sa, training_args, tokenizer, info, summary, tables, predictions)
    results_md = tables.finish(summary, scored, sa.baseline_budget)

    # ---- Finish ----
    if training_args.process_index != 0:
        return summary
    trainer.save_model(out)
    tokenizer.save_pretrained(out)
    report.plot_confusions(out, splits, predictions)
    merged = os.path.join(out, "merged")
    merged_push = push and (sa.push_merged or sa.hub_push == "merged")
    if sa.merge_adapter and not merged_push:  # a merged push merges in publish_student below
        merge_adapter(out, sa.model_name_or_path, merged)
    quant = "4-bit NF4, double quantization (bitsandbytes), LoRA on top (QLoRA)" if sa.quantization else None
    mixture_md = [
        f"- `{k}`: p={p:.3f}, {info['mixture_counts'][k]} training rows drawn" for k, p in mix_info["mixture"].items()
    ]
    card = Card(
        base_model=sa.model_name_or_path, task="text-classification", recipe="qlora_multitask",
        description=DESCRIPTION, model_name=training_args.hub_model_id, datasets=[sp.source for sp in splits],
        library_name="peft", extra_sections={
            "Tasks and mixture": "\n".join(mixture_md),
            "Quantization": (quant or "none (LoRA on the full-precision model)")
            + f"; LoRA r={sa.lora_r}, alpha={sa.lora_alpha}, targets={sa.lora_target_modules}",
        },
    )  # fmt: skip
    card, push_folder = publish_student(
        out,
        card,
        training_args.hub_model_id or os.path.basename(os.path.normpath(out)),
        model_name_or_path=sa.model_name_or_path,
        base_model_id=sa.base_model_id,
        revision=sa.model_revision,
        merge=merged_push,
        citation=CITATION,
    )
    card_metrics = {"multitask": {f"{t} {k}": v for t, m in results.items() for k, v in m.items()}}
    log_final_metrics(card_metrics, trainer=trainer)
    finish_run(
        out,
        metrics=summary,
        results_md=results_md,
        predictions=predictions,
        log_history=trainer.state.log_history,
        config={"script_args": sa, "training_args": training_args},
        card=card,
        card_metrics=card_metrics,
        push=Push(
            training_args.hub_model_id if push else None, training_args.hub_token, bool(training_args.hub_private_repo),
            push_folder if merged_push else None, ["baselines/*", "merged/*", "checkpoint-*", "*.pt", "*.pth", "runs/*"],
        ),
    )  # fmt: skip
    if os.path.isdir(merged):
        copy_card_to_merged(out, merged)
    print(results_md)
    return summary


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
