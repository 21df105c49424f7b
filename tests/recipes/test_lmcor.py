"""End-to-end LMCor recipe on tiny models: loss logged, weights change, exact files written, push, two processes."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from data_gen import candidates
from toolkit.generation.cache import GenerationCache
from toolkit.methods.lmcor.data import load_pool, split_and_subsample

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "recipes" / "lmcor.py"
RUN_FILES = {
    "metrics.json",
    "results.md",
    "predictions.jsonl",
    "training_curves.png",
    "README.md",
    "run_config.json",
    "report.html",
}


def _recipe():
    return importlib.import_module("recipes.lmcor")


def _write_pool(path: Path, n: int = 24, with_candidates: bool = True) -> Path:
    """A tiny GEC pool; candidates from 3 'systems', the second one always right."""
    subjects = ["she", "he", "the dog", "my friend", "the man", "our teacher"]
    rows = []
    for i in range(n):
        subj = subjects[i % len(subjects)]
        ref = f"{subj} went to school yesterday ."
        row = {"id": f"t{i}", "source": f"{subj} go to school yesterday .", "references": [ref]}
        if with_candidates:
            row["candidates"] = [f"{subj} goes to school yesterday .\n", ref, f"{subj} go to the school ."]
            row["systems"] = ["A", "B", "C"]
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _common(out: Path, pool: Path, model: Path, *extra: str) -> list[str]:
    data = ["--task", "jsonl", "--task_type", "gec", "--pool_path", str(pool), "--dev_size", "4", "--test_size", "6"]
    corrector = ["--k", "3", "--separator", " || ", "--max_new_tokens", "8"]
    student = ["--model_name_or_path", str(model), "--max_source_len", "96", "--max_target_len", "32"]
    schedule = "--max_steps 4 --per_device_train_batch_size 4 --learning_rate 5e-3 --logging_steps 1"
    plumbing = "--save_strategy no --report_to none --train_sampling_strategy group_by_length"
    training = ["--output_dir", str(out), *schedule.split(), *plumbing.split()]
    return [*data, *corrector, *student, *training, *extra]


def _weights(path: Path) -> dict:
    files = sorted(path.glob("*.safetensors"))
    assert files, f"no safetensors in {path}"
    return {k: v for f in files for k, v in load_file(str(f)).items()}


def _check_run(out: Path, results: dict, n_test: int = 6):
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["train_loss"] > 0 and metrics["training"]["train_tokens_per_s"] > 0
    methods = [row["method"] for row in metrics["table"]]
    selectors = ["source copy", "first candidate", "random candidate", "MBR (chrF consensus)"]
    oracles = [f"oracle selection (corpus {label} search)" for label in ("GLEU", "BLEU", "chrF")]
    assert methods == [*selectors, *oracles, "LMCor corrector"]
    table = (out / "results.md").read_text()
    assert "| method | gleu | bleu | chrf |" in table and "LMCor corrector" in table
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n_test and all("\n" not in p["input"] for p in preds)
    assert all(1 <= len(p["candidates"]) <= 3 for p in preds)  # the candidates read, for an exact copy rate
    # Each oracle row is >= every candidate selector on its own metric, on the same rows.
    for metric, label in (("gleu", "GLEU"), ("bleu", "BLEU"), ("chrf", "chrF")):
        oracle = metrics["scores"][f"oracle selection (corpus {label} search)"][metric]
        assert all(oracle >= metrics["scores"][m][metric] - 1e-9 for m in methods[1:4]), metric
    card = (out / "README.md").read_text()
    assert "lmcor" in card and "BLEU|" in card
    assert results["corrector"] == metrics["corrector"]


def test_lmcor_tiny_t5_full_finetune(tiny_t5_dir, tmp_path):
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl")
    out = tmp_path / "run"
    args = recipe.make_parser().parse_args_and_config(
        _common(out, pool, tiny_t5_dir, "--lora", "false", "--separator", " <extra_id_0> ", "--num_beams", "2")
    )
    results = recipe.main(*args)
    _check_run(out, results)
    before, after = _weights(tiny_t5_dir), _weights(out)
    assert any(not before[k].equal(after[k]) for k in before if k in after)
    names = {p.name for p in out.iterdir()}
    # the reloadable student sits next to the run artifacts; no trainer checkpoint is left behind
    assert RUN_FILES | {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"} <= names
    assert not [n for n in names if n.startswith("checkpoint-")]


def test_lmcor_dev_curve_is_the_dev_loss_of_every_evaluation(tiny_t5_dir, tmp_path):
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl")
    out = tmp_path / "run"
    extra = ["--lora", "false", "--eval_strategy", "steps", "--eval_steps", "2"]
    recipe.main(*recipe.make_parser().parse_args_and_config(_common(out, pool, tiny_t5_dir, *extra)))
    curve = json.loads((out / "metrics.json").read_text())["dev_curve"]
    assert [point["step"] for point in curve] == [2, 4]
    assert all(set(point) == {"step", "eval_loss"} and point["eval_loss"] > 0 for point in curve)
    assert curve[0]["eval_loss"] != curve[1]["eval_loss"]  # the dev loss moves as the student trains


def test_lmcor_reranker_outputs_one_of_each_rows_candidates(tiny_t5_dir, tmp_path):
    """The learned reranker: same student and rows, every test output mapped onto one of the row's candidates."""
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl")
    out = tmp_path / "run"
    extra = ["--lora", "false", "--mode", "reranker"]
    results = recipe.main(*recipe.make_parser().parse_args_and_config(_common(out, pool, tiny_t5_dir, *extra)))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_row"] == "learned reranker" == metrics["table"][-1]["method"]
    preds = _predictions(out)
    assert len(preds) == 6 and all(p["prediction"] in p["candidates"] for p in preds)
    mapped = sum(" ".join(p["generated"].split()) not in p["candidates"] for p in preds)
    assert metrics["reranker"]["mapped_by_chrf"] == mapped and metrics["reranker"]["rows"] == 6
    assert f"{mapped} / 6 generations were not exactly a candidate" in (out / "results.md").read_text()
    assert results["corrector"] == metrics["scores"]["learned reranker"]


def test_lmcor_tiny_llama_lora_teacher_candidates_and_push(tiny_llama_dir, tmp_path, fake_hub):
    """Pool without candidates: the tiny Llama teacher fills them through the engine (cached), then LoRA + push."""
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl", with_candidates=False)
    out = tmp_path / "run"
    teacher = ["--teacher_model", str(tiny_llama_dir), "--cache_path", str(tmp_path / "cache.sqlite")]
    teacher += ["--teacher_max_tokens", "6", "--num_demos", "1"]
    hub = ["--push_to_hub", "true", "--hub_model_id", "fake-user/lmcor-tiny", "--hub_token", fake_hub.token]
    extra = [*teacher, *hub, "--chat_template", "false", "--lora_r", "4", "--eval_generate_steps", "2"]
    results = recipe.main(*recipe.make_parser().parse_args_and_config(_common(out, pool, tiny_llama_dir, *extra)))
    _check_run(out, results)
    adapter = _weights(out)
    assert adapter and all("lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # lora_B starts at zero
    assert [h["step"] for h in results["learning_curve"]] == [2]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    # source + up to k=3 candidates (a random teacher may emit empty ones, which are dropped)
    assert all(1 <= p["input"].count(" || ") <= 3 for p in preds)
    with GenerationCache(tmp_path / "cache.sqlite") as cache:
        assert len(cache) == 6 * 3  # 6 distinct prompts x (1 greedy + 2 samples), content-addressed
    pushed = fake_hub.files("fake-user/lmcor-tiny")
    assert {"README.md", "adapter_model.safetensors", "metrics.json", "results.md"} <= set(pushed)
    # The card counts every teacher request of the run (train + dev + test), 1 greedy + 1 sampled per row.
    assert "| Teacher calls | 48 |" in (out / "README.md").read_text()
    config_text = (out / "run_config.json").read_text()
    assert fake_hub.token not in config_text and fake_hub.token not in pushed["README.md"].decode()


def test_candidates_job_then_recipe_makes_no_new_teacher_calls(tiny_t5_dir, fake_openai, tmp_path):
    """The recipe gets its candidates through the candidates job (same requests, same prompt): after
    ``data_gen/candidates.py`` with the shipped JFLEG config ran on the same rows and teacher, it calls nothing."""
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl", with_candidates=False)
    cache = tmp_path / "c.sqlite"
    url = fake_openai.base_url
    teacher = ["--teacher_backend", "openai", "--teacher_model", "fake", "--teacher_base_url", url]
    teacher += [
        "--teacher_api_key",
        "sk-x",
        "--cache_path",
        str(cache),
        "--num_demos",
        "3",
        "--teacher_max_tokens",
        "48",
    ]
    t5 = ["--lora", "false", "--separator", " <extra_id_0> ", "--max_steps", "1", "--k", "4"]
    argv = _common(tmp_path / "run", pool, tiny_t5_dir, *t5, *teacher)
    script_args, config, model_args, training_args = recipe.make_parser().parse_args_and_config(argv)
    # The job's demonstrations: the recipe's first num_demos + 1 training rows (by index into the same file).
    splits = split_and_subsample(load_pool("jsonl", pool_path=str(pool)), config)
    ids = [json.loads(line)["id"] for line in pool.read_text().splitlines()]
    demos = [str(ids.index(r["id"])) for r in splits["train"][:4]]
    job_argv = ["--config", str(REPO / "data_gen" / "configs" / "jfleg_smollm2.yaml"), "--progress", "false"]
    job_argv += ["--backend", "openai", "--model", "fake", "--base_url", url, "--api_key", "sk-x"]
    job_argv += ["--input_file", str(pool), "--output_dir", str(tmp_path / "job"), "--cache_path", str(cache)]
    job_argv += ["--demo_indices", *demos]
    summary = candidates.main(*candidates.make_parser().parse_args_and_config(job_argv))
    assert summary["completed"] == 24 and len(fake_openai.requests) == 2 * 24
    fake_openai.reset_log()
    results = recipe.main(script_args, config, model_args, training_args)
    assert fake_openai.requests == []  # every candidate of every split came from the job's cache entries
    assert results["training"]["train_examples"] == 24 - 4 - 6


def test_lmcor_given_test_file_is_the_test_set(tiny_t5_dir, tmp_path):
    """Train on the pool, test on another file (no carved test split); long inputs are cut fairly."""
    recipe = _recipe()
    pool = _write_pool(tmp_path / "pool.jsonl")
    test_rows = [
        {
            "id": f"official{i}",
            "source": f"they go to work on monday {i} .",
            "references": [f"they went to work {i} ."],
            "candidates": [f"they goes to work {i} .", f"they went to work {i} .", "they go work ."],
            "systems": ["A", "B", "C"],
        }
        for i in range(5)
    ]
    test_file = tmp_path / "official_test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    out = tmp_path / "run"
    argv = _common(
        out, pool, tiny_t5_dir, "--lora", "false", "--separator", " <extra_id_0> ", "--test_path", str(test_file)
    )
    results = recipe.main(*recipe.make_parser().parse_args_and_config(argv))
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in preds] == [r["id"] for r in test_rows]
    assert [p["references"] for p in preds] == [r["references"] for r in test_rows]
    assert all("they goes to work" in p["input"] for p in preds)
    training = results["training"]
    assert training["test_rows"] == 5 and training["dev_examples"] == 4  # the pool lost only its dev rows
    assert training["train_examples"] == 24 - 4
    # ByT5 counts bytes: the 96-token cap cuts the 3-candidate inputs, and the run says how many.
    cut = training["inputs_cut_to_max_source_len"]
    assert cut["test"] == 5 and all(p["input"].count("<extra_id_0>") == 3 for p in preds)


def test_lmcor_bad_config_errors(tmp_path):
    recipe = _recipe()
    with pytest.raises((ValueError, SystemExit), match="task_type|jsonl|pool_path"):
        recipe.make_parser().parse_args_and_config(["--task", "jsonl", "--output_dir", str(tmp_path)])
    with pytest.raises((ValueError, SystemExit), match="overlap"):
        recipe.make_parser().parse_args_and_config(
            ["--train_systems", "A", "B", "--test_systems", "B", "--output_dir", str(tmp_path)]
        )


def test_default_config_used_without_args():
    recipe = _recipe()
    argv = recipe.argv_with_default_config([])
    _script, config, model, _training = recipe.make_parser().parse_args_and_config(argv)
    assert config.task == "demo_gec" and model.model_name_or_path == "local:smollm2-135m"
    assert recipe.argv_with_default_config(["--config", "x.yaml"]) == ["--config", "x.yaml"]


@pytest.mark.parametrize("name", ["wmt22_deen_gpu", "wmt22_ende_gpu", "jfleg_gpu"])
def test_gpu_configs_parse_at_the_papers_scale(name):
    path = REPO / "recipes" / "configs" / "lmcor" / f"{name}.yaml"
    _script, config, model, training = _recipe().make_parser().parse_args_and_config(["--config", str(path)])
    assert model.model_name_or_path.startswith(("google/", "Qwen/")) and config.max_source_words is None
    assert training.max_steps >= 1000
    # bf16 is a command-line flag (a CPU parse of bf16: true fails): the config's run line must pass it
    assert "--bf16 true" in path.read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_score_the_same_rows_as_one(tiny_llama_dir, tmp_path):
    """2-process CPU DDP (gloo) through `accelerate launch`, same global batch: same rows, order, learning curve, scores.

    Not via a ``use_cpu: true`` accelerate config: with accelerate 1.15 that starts a single process. Test generation
    and the learning-curve callback are sharded across both ranks; a hang (a rank left out of a collective) fails at
    the timeout.
    """
    pool = _write_pool(tmp_path / "pool.jsonl")
    shared = ["--lora", "false", "--chat_template", "false", "--eval_generate_steps", "2"]
    shared += ["--train_sampling_strategy", "random", "--gen_batch_size", "2"]
    shared += ["--test_size", "4"]  # 16 training rows: 4 full global batches of 4, the same in both runs

    one = tmp_path / "one"
    recipe = _recipe()
    argv = _common(one, pool, tiny_llama_dir, *shared, "--per_device_train_batch_size", "4")
    # The launched script reads the default config under its flags: so does this run.
    recipe.main(*recipe.make_parser().parse_args_and_config(recipe.argv_with_default_config(argv)))

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(_free_port()), str(SCRIPT)]
    argv = _common(two, pool, tiny_llama_dir, *shared, "--per_device_train_batch_size", "2")
    proc = subprocess.run([*launch, *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("LMCor on jsonl") == 1  # only the main process reports

    single = json.loads((one / "metrics.json").read_text())
    double = json.loads((two / "metrics.json").read_text())
    assert single["distributed"]["num_processes"] == 1
    assert double["distributed"] == {
        "distributed_type": "MULTI_CPU",
        "num_processes": 2,
        "wrapper": "DistributedDataParallel",
    }
    assert double["training"]["world_size"] == 2
    assert [p["id"] for p in _predictions(two)] == [p["id"] for p in _predictions(one)]
    assert [p["input"] for p in _predictions(two)] == [p["input"] for p in _predictions(one)]
    assert [h["step"] for h in double["learning_curve"]] == [h["step"] for h in single["learning_curve"]] == [2]
    assert double["learning_curve"] == [pytest.approx(h, abs=1e-6) for h in single["learning_curve"]]
    assert set(double["scores"]) == set(single["scores"])
    for method, scores in single["scores"].items():
        assert double["scores"][method] == pytest.approx(scores, abs=1e-6), method
