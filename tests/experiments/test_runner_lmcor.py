"""The runner drives the real LMCor recipe (tiny T5, tiny pool) through its public interface, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from experiments import runner as runner_module
from experiments.plan import load_plan
from experiments.runner import Runner


def _pool(path: Path, n: int = 24) -> Path:
    """A tiny GEC pool; candidates from 3 systems, the second always right."""
    subjects = ["she", "he", "the dog", "my friend", "the man", "our teacher"]
    rows = []
    for i in range(n):
        subject = subjects[i % len(subjects)]
        reference = f"{subject} went to school yesterday ."
        rows.append(
            {
                "id": f"t{i}",
                "source": f"{subject} go to school yesterday .",
                "references": [reference],
                "candidates": [f"{subject} goes to school yesterday .", reference, f"{subject} go to the school ."],
                "systems": ["A", "B", "C"],
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_lmcor_plan_runs_resumes_and_tables(tiny_t5_dir, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    plan = {
        "name": "tiny_lmcor",
        "recipe": "lmcor",
        "config": None,
        "budget": "seconds",
        "seeds": [0, 1],
        "test_rows": 6,
        "primary_metric": "chrf",
        "metrics": ["chrf", "bleu", "copy_rate"],
        "statistic": "seed_row_bootstrap",
        "launcher": "inprocess",
        "bootstrap_samples": 50,
        "overrides": {
            "task": "jsonl",
            "task_type": "gec",
            "pool_path": str(_pool(tmp_path / "pool.jsonl")),
            "dev_size": 4,
            "test_size": 6,
            "model_name_or_path": str(tiny_t5_dir),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 5e-3,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "max_new_tokens": 8,
            "max_source_len": 96,
            "max_target_len": 32,
            "separator": " || ",
        },
        "choices": {
            "steps": {"run": "dev_curve", "series": "dev_curve", "x": "step", "y": "eval_loss", "rule": "min"}
        },
        "runs": [
            {
                "name": "dev_curve",
                "seeds": [0],
                "overrides": {"k": 3, "max_steps": 3, "eval_strategy": "steps", "eval_steps": 1},
            },
            {"name": "k3", "overrides": {"k": 3, "max_steps": "{choice:steps}"}},
            {"name": "reranker", "overrides": {"k": 3, "mode": "reranker", "max_steps": "{choice:steps}"}},
            {"name": "no_candidates", "seeds": [0], "overrides": {"k": 3, "no_candidates": True}},
        ],
        "tables": [
            {
                "name": "tiny",
                "rows": [
                    {"label": "corrector", "run": "k3"},
                    {"label": "MBR", "run": "k3", "field": "baseline:MBR*"},
                    {"label": "learned reranker", "run": "reranker"},
                    {"label": "no candidates", "run": "no_candidates"},
                ],
                "comparisons": [
                    {"system": "corrector", "baseline": "MBR"},
                    {"system": "corrector", "baseline": "no candidates"},
                    {"system": "corrector", "baseline": "learned reranker"},
                ],
            }
        ],
    }
    path = repo / "tiny_lmcor.yaml"
    path.write_text(yaml.safe_dump(plan))
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "plan"], check=True)
    calls = []
    real = runner_module.invoke_recipe

    def counted(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(runner_module, "invoke_recipe", counted)
    runner = Runner(load_plan(path), tmp_path / "runs", tmp_path / "results")
    runner.run()
    assert len(calls) == 6
    table = json.loads((tmp_path / "results" / "lmcor" / "tiny.json").read_text())
    dev = json.loads((tmp_path / "runs" / "tiny_lmcor" / "dev_curve" / "seed0" / "metrics.json").read_text())
    assert [point["step"] for point in dev["dev_curve"]] == [1, 2, 3]
    best = min(dev["dev_curve"], key=lambda point: point["eval_loss"])["step"]
    assert table["dev_choices"]["steps"] == best  # the later runs' step count, chosen on the dev curve
    rows = {row["label"]: row for row in table["rows"]}
    assert rows["corrector"]["seeds"] == 2 and rows["corrector"]["test_rows"] == 6
    assert rows["MBR"]["copy_rate"] == 100.0  # MBR picks one of the candidates
    assert rows["learned reranker"]["seeds"] == 2 and rows["learned reranker"]["copy_rate"] == 100.0
    for comparison in table["comparisons"]:
        assert comparison["chrf"]["ci_low"] <= comparison["chrf"]["difference"] <= comparison["chrf"]["ci_high"]
    assert len(list((tmp_path / "results" / "lmcor" / "predictions" / "tiny_lmcor").glob("*.jsonl.gz"))) == 6

    calls.clear()
    outcome = Runner(load_plan(path), tmp_path / "runs", tmp_path / "results").run()
    assert calls == [] and len(outcome.skipped) == 6
