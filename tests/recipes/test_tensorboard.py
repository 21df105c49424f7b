"""``report_to: tensorboard`` in every recipe, on tiny models: the event files are read back with TensorBoard's own
``EventAccumulator`` and hold the expected scalar tags, one point per logging step (or head epoch), each sub-model
(baselines, LLMEmbed variants) in a run folder of its own under ``output_dir``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recipes import test_llmembed as llmembed_t
from tests.recipes import test_lmcor as lmcor_t
from tests.recipes import test_step_by_step as sbs_t
from tests.recipes.test_llmembed import toy_data  # noqa: F401 - the fixture
from toolkit.methods.llmembed.config import VARIANTS

pytest.importorskip("tensorboard")


def _scalars(run_dir: Path) -> dict[str, list[int]]:
    """``{tag: [step, ...]}`` of every scalar in the event files of ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _trainer_run(output_dir: Path) -> dict[str, list[int]]:
    """The scalars of the one Trainer run (``<output_dir>/runs/<date>_<host>``) of a model."""
    runs = [d for d in (output_dir / "runs").iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return _scalars(runs[0])


def test_lmcor_logs_train_and_eval_scalars(tiny_t5_dir, tmp_path):
    recipe = lmcor_t._recipe()
    pool = lmcor_t._write_pool(tmp_path / "pool.jsonl")
    out = tmp_path / "run"
    argv = lmcor_t._common(out, pool, tiny_t5_dir, "--lora", "false", "--separator", " <extra_id_0> ")
    argv += ["--report_to", "tensorboard", "--eval_strategy", "steps", "--eval_steps", "2"]
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))

    scalars = _trainer_run(out)
    assert scalars["train/loss"] == [1, 2, 3, 4]  # logging_steps=1, max_steps=4
    assert scalars["train/learning_rate"] == [1, 2, 3, 4]
    assert scalars["eval/loss"] == [2, 4]  # the dev split's loss, in the same run under eval/
    assert scalars["train/train_loss"] == [4]  # the end-of-training summary


def test_step_by_step_logs_task_losses_and_dev_accuracy(tiny_t5_dir, tmp_path):
    recipe = sbs_t._load("step_by_step")
    train, test = sbs_t._write_data(tmp_path)
    out = tmp_path / "run"
    argv = sbs_t._args(tiny_t5_dir, train, test, out, "--mode", "task_prefix", "--report_to", "tensorboard")
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))

    scalars = _trainer_run(out)
    for tag in ("train/loss", "train/label_loss", "train/rationale_loss"):
        assert scalars[tag] == [1, 2, 3, 4], tag
    assert scalars["eval/loss"] == [2, 4] and scalars["eval/accuracy"] == [2, 4]  # eval_steps=2


def test_qlora_multitask_one_run_per_model(tiny_llama_dir, tiny_bert_dir, tmp_path):
    pytest.importorskip("bitsandbytes")
    from tests.recipes import test_qlora_multitask as mt_t

    recipe = mt_t._recipe()
    topic, slots = mt_t._write_tasks(tmp_path)
    argv = mt_t._common(tmp_path, tiny_llama_dir, topic, slots) + [
        "--quantization", "false", "--encoder_model", str(tiny_bert_dir), "--report_to", "tensorboard",
    ]  # fmt: skip
    recipe.main(*mt_t._parse(recipe, argv))
    out = tmp_path / "run"

    assert _trainer_run(out)["train/loss"] == [1, 2, 3]  # the multi-task model: logging_steps=1, max_steps=3
    baselines = out / "baselines"
    expected = {
        "single_news_topic", "single_snipsish_intent", "single_snipsish_slots",  # the single-task LoRA models
        "encoder_news_topic", "encoder_snipsish_intent", "encoder_snipsish_slots",  # the encoder models
    }  # fmt: skip
    assert {d.name for d in baselines.iterdir()} == expected
    for name in expected:  # every baseline trains the multi-task model's 3 steps (baseline_budget=per_model)
        assert _trainer_run(baselines / name)["train/loss"] == [1, 2, 3], name


def test_llmembed_head_curves_per_variant(toy_data, tiny_llama_dir, tiny_bert_dir, tmp_path):  # noqa: F811
    recipe = llmembed_t._recipe()
    out = tmp_path / "run"
    argv = llmembed_t._args(toy_data, out, tmp_path / "cache", tiny_llama_dir, tiny_bert_dir)
    argv += ["--epochs", "5", "--patience", "5", "--run_few_shot", "false", "--report_to", "tensorboard"]
    metrics = recipe.main(*recipe.make_parser().parse_args_and_config(argv))

    variants = VARIANTS  # no --variants: every one runs
    assert {d.name for d in (out / "runs").iterdir()} == set(variants)
    for variant in variants:
        scalars = {tag: steps for tag, steps in _scalars(out / "runs" / variant).items() if "final/" not in tag}
        # train_head's history, one point per epoch (patience = epochs: no early stop), under the Trainer's tags.
        assert scalars == {tag: [1, 2, 3, 4, 5] for tag in ("train/loss", "eval/loss", "eval/accuracy")}, variant
    # The results table (every method on the test rows) is in the reported head's run, after its last epoch.
    final = {tag: steps for tag, steps in _scalars(out / "runs" / "llmembed").items() if "final/" in tag}
    assert "final/test/llmembed/accuracy" in final and "final/test/encoder_only/macro_f1" in final
    assert all(steps == [5] for steps in final.values())
    assert len(metrics["head_history"]) == 5
    # The fine-tuned encoder baseline is a Trainer run of its own.
    assert "train/train_loss" in _trainer_run(out / "baselines" / "finetuned_encoder")

    # A re-run into the same output dir replaces the head curves instead of overlaying a second copy.
    recipe.main(*recipe.make_parser().parse_args_and_config(argv))
    assert _scalars(out / "runs" / "llmembed")["train/loss"] == [1, 2, 3, 4, 5]


def test_llmembed_report_to_is_validated():
    recipe = llmembed_t._recipe()
    with pytest.raises(ValueError, match="not supported"):
        recipe.RunArguments(report_to=["wandb"])
    assert recipe.RunArguments(report_to=["none"]).report_to == []
