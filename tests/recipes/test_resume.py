"""A recipe killed after a checkpoint and re-run with ``--resume_from_checkpoint`` ends where an uninterrupted run
with the same seed ends: same losses at every step after the checkpoint, same weights, same final metrics.

Trainer-based recipes only: the LLMEmbed head trains in seconds from cached features and writes no checkpoints.
The kill is simulated in-process (a callback raises right after the checkpoint is on disk) for LMCor and QLoRA
multi-task, and is a real ``SIGKILL`` of a ``python recipes/step_by_step.py`` process for step-by-step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.recipes import test_lmcor as lmcor_t
from tests.recipes import test_step_by_step as sbs_t

REPO = Path(__file__).resolve().parents[2]
SAVE = ["--save_strategy", "steps", "--save_steps", "2", "--max_steps", "4", "--seed", "0"]


class Killed(RuntimeError):
    """Stands for the process dying right after a checkpoint was written."""


class KillAfterSave(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after checkpoint-{self.step}")


class StepsRun(TrainerCallback):
    """Records the optimizer steps a run actually executes (a resumed run must not redo the first ones)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def _with_callback(monkeypatch, callback):
    """Every Trainer built from now on (the recipes build their own) also runs ``callback``."""
    import transformers.trainer

    monkeypatch.setattr(transformers.trainer, "DEFAULT_CALLBACKS", [*transformers.trainer.DEFAULT_CALLBACKS, callback])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def _assert_same_weights(a: Path, b: Path):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6, msg=key)


def _losses(checkpoint: Path) -> dict[int, float]:
    logs = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return {e["step"]: e["loss"] for e in logs if "loss" in e}


def _kill_then_resume(monkeypatch, run, argv_for):
    """Run ``run(argv)`` killed after checkpoint-2, then resumed with ``--resume_from_checkpoint true``.

    Returns the resumed run's result and the steps it executed.
    """
    with monkeypatch.context() as m:
        _with_callback(m, KillAfterSave(2))
        with pytest.raises(Killed):
            run(argv_for())
    steps = StepsRun()
    with monkeypatch.context() as m:
        _with_callback(m, steps)
        result = run(argv_for("--resume_from_checkpoint", "true"))
    return result, steps.steps


def test_lmcor_resumed_run_matches_uninterrupted(tiny_t5_dir, tmp_path, monkeypatch):
    recipe = lmcor_t._recipe()
    pool = lmcor_t._write_pool(tmp_path / "pool.jsonl")

    def run(argv):
        return recipe.main(*recipe.make_parser().parse_args_and_config(argv))

    def argv(out, *extra):
        base = lmcor_t._common(out, pool, tiny_t5_dir, "--lora", "false", "--separator", " <extra_id_0> ")
        return [*base, *SAVE, *extra]

    reference = run(argv(tmp_path / "ref"))
    out = tmp_path / "killed"
    resumed, steps = _kill_then_resume(monkeypatch, run, lambda *extra: argv(out, *extra))

    assert steps == [3, 4]  # restarted at the checkpoint, not from scratch
    assert resumed["corrector"] == reference["corrector"]
    assert resumed["training"]["tokens_seen_non_padding"] == reference["training"]["tokens_seen_non_padding"]
    _assert_same_weights(out, tmp_path / "ref")
    assert _losses(out / "checkpoint-4") == pytest.approx(_losses(tmp_path / "ref" / "checkpoint-4"), rel=1e-5)


def test_qlora_multitask_resumed_run_matches_uninterrupted(tiny_llama_dir, tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    from tests.recipes import test_qlora_multitask as mt_t

    recipe = mt_t._recipe()
    topic, slots = mt_t._write_tasks(tmp_path)

    def run(argv):
        return recipe.main(*mt_t._parse(recipe, argv))

    def argv(out, *extra):
        base = mt_t._common(tmp_path, tiny_llama_dir, topic, slots)
        return [*base, "--baselines", "none", *SAVE, "--output_dir", str(out), *extra]

    reference = run(argv(tmp_path / "ref"))
    out = tmp_path / "killed"
    resumed, steps = _kill_then_resume(monkeypatch, run, lambda *extra: argv(out, *extra))

    assert steps == [3, 4]
    for task, metrics in reference["multitask"]["eval"].items():
        scores = {k: v for k, v in metrics.items() if "second" not in k}  # timings differ, scores must not
        assert {k: resumed["multitask"]["eval"][task][k] for k in scores} == scores, task
    assert resumed["multitask"]["train"]["train_steps"] == 4
    _assert_same_weights(out, tmp_path / "ref")  # the adapter (4-bit base, LoRA on top)
    assert _losses(out / "checkpoint-4") == pytest.approx(_losses(tmp_path / "ref" / "checkpoint-4"), rel=1e-5)


def test_step_by_step_resumed_run_matches_uninterrupted(tiny_t5_dir, tmp_path, monkeypatch):
    recipe = sbs_t._load("step_by_step")
    train, test = sbs_t._write_data(tmp_path)

    def run(argv):
        return recipe.main(*recipe.make_parser().parse_args_and_config(argv))

    def argv(out, *extra):
        return sbs_t._args(tiny_t5_dir, train, test, out, "--mode", "task_prefix", *SAVE, *extra)

    reference = run(argv(tmp_path / "ref"))
    out = tmp_path / "killed"
    resumed, steps = _kill_then_resume(monkeypatch, run, lambda *extra: argv(out, *extra))

    assert steps == [3, 4]
    # train_loss is not compared: transformers' TrainOutput.training_loss averages the steps run in this call only.
    for key in ("test_accuracy", "dev_accuracy", "global_steps"):
        assert resumed[key] == reference[key], key
    assert Path(resumed["best_checkpoint"]).name == Path(reference["best_checkpoint"]).name
    _assert_same_weights(out / "checkpoint-4", tmp_path / "ref" / "checkpoint-4")
    assert _losses(out / "checkpoint-4") == pytest.approx(_losses(tmp_path / "ref" / "checkpoint-4"), rel=1e-5)


# A real kill: the child pauses right after writing checkpoint-2 (so the test knows the checkpoint is complete),
# then gets SIGKILL: no exception handler, no atexit, exactly what an OOM-killer or a lost node leaves behind.
PAUSE_AFTER_SAVE = """
import pathlib, runpy, sys, time
import transformers.trainer as trainer
from transformers import TrainerCallback

marker = pathlib.Path(sys.argv[1])

class PauseAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        marker.write_text(str(state.global_step))
        time.sleep(600)

trainer.DEFAULT_CALLBACKS = [*trainer.DEFAULT_CALLBACKS, PauseAfterSave()]
script, sys.argv = sys.argv[2], sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.slow
def test_step_by_step_sigkill_then_resume_from_the_cli(tiny_t5_dir, tmp_path):
    train, test = sbs_t._write_data(tmp_path)
    script = str(REPO / "recipes" / "step_by_step.py")

    def argv(out, *extra):
        return sbs_t._args(tiny_t5_dir, train, test, out, "--mode", "task_prefix", *SAVE, *extra)

    out, marker, log = tmp_path / "killed", tmp_path / "saved", tmp_path / "child.log"
    with open(log, "wb") as fh:  # a file, not a pipe: an unread pipe fills up and blocks the child
        child = subprocess.Popen(
            [sys.executable, "-c", PAUSE_AFTER_SAVE, str(marker), script, *argv(out)],
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert child.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()  # no-op once killed; stops the child when an assertion above failed
        child.wait()
    assert child.returncode == -signal.SIGKILL and marker.read_text() == "2"
    assert (out / "checkpoint-2").is_dir() and not (out / "checkpoint-4").exists()
    assert not (out / "metrics.json").exists()

    # Resume from the command line (`true` = the latest checkpoint in output_dir) and run uninterrupted.
    for folder, extra in ((out, ["--resume_from_checkpoint", "true"]), (tmp_path / "ref", [])):
        done = subprocess.run([sys.executable, script, *argv(folder, *extra)], cwd=REPO, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    resumed, reference = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "ref"))
    for key in ("test_accuracy", "dev_accuracy", "global_steps", "n_train"):
        assert resumed[key] == reference[key], key
    assert Path(resumed["best_checkpoint"]).name == Path(reference["best_checkpoint"]).name
    _assert_same_weights(out / "checkpoint-4", tmp_path / "ref" / "checkpoint-4")
    _assert_same_weights(out, tmp_path / "ref")  # the saved (best) model
    losses = _losses(out / "checkpoint-4")
    assert sorted(losses) == [1, 2, 3, 4]
    assert losses == pytest.approx(_losses(tmp_path / "ref" / "checkpoint-4"), rel=1e-5)
