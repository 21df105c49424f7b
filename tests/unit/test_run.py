"""finish_run: one artifact set and one run-record schema for every recipe, secrets nowhere, push when asked."""

import json
from dataclasses import dataclass

import pytest

from toolkit.meter import Cost
from toolkit.run import ARTIFACTS, Card, Push, finish_run, normalise_timings, render_tables


@dataclass
class Args:
    learning_rate: float = 3e-4
    hub_token: str | None = None


TABLES = {"results": [{"model": "student", "acc": 0.75}], "costs": [{"model": "student", "cpu_s": 2.0}]}


def _finish(tmp_path, metrics=None, tables=None, **kw):
    return finish_run(
        tmp_path / "run",
        metrics=metrics if metrics is not None else {"test": {"accuracy": 0.75}, "n": 4},
        tables=tables if tables is not None else TABLES,
        timings={"train_wall_s": 3.0, "generate_seconds": 1.0},
        predictions=[{"input": "a", "prediction": "b", "gold": "b"}],
        log_history=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
        config={"script_args": Args(hub_token="hf_secretsecretsecret")},
        card=Card(base_model="tiny", task="classification", recipe="demo", description="Trains a demo student."),
        **kw,
    )


def test_writes_every_artifact_with_content_and_no_secret(tmp_path):
    out = _finish(tmp_path)
    run = tmp_path / "run"
    assert out["hub_url"] is None
    assert sorted(p.name for p in run.iterdir() if p.name in ARTIFACTS) == sorted(ARTIFACTS)
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] == 0.75
    card = (run / "README.md").read_text()
    assert "Trains a demo student." in card and "| student | 0.75 |" in card
    assert json.loads((run / "run_config.json").read_text())["script_args"]["learning_rate"] == 3e-4
    for name in ARTIFACTS:
        if not name.endswith(".png"):
            assert "hf_secretsecretsecret" not in (run / name).read_text(), name


def test_other_processes_write_nothing(tmp_path):
    _finish(tmp_path, is_main=False)
    assert not (tmp_path / "run").exists()


def test_push_uploads_the_run(tmp_path, fake_hub):
    out = _finish(tmp_path, push=Push(repo_id="fake-user/demo", token=fake_hub.token))
    assert out["hub_url"].startswith(fake_hub.url)
    assert {"README.md", "metrics.json", "results.md"} <= set(fake_hub.files("fake-user/demo"))


def test_metrics_json_is_the_run_record(tmp_path):
    _finish(tmp_path, tokens=30)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["n"] == 4  # free method fields stay
    assert record["timings"]["train_s"] == 3.0 and record["timings"]["generate_s"] == 1.0
    assert set(record["timings"]) == {"train_s", "generate_s", "total_s"}
    assert record["tables"]["results"] == [{"model": "student", "acc": 0.75}]
    assert record["predictions"] == {"path": "predictions.jsonl", "rows": 1}
    assert record["compute"]["tokens"] == 30 and record["compute"]["tokens_per_s"] == pytest.approx(10.0)
    assert {"wall_s", "cpu_s", "peak_rss_mb", "energy_wh"} <= set(record["compute"])
    _finish(tmp_path, prediction_columns={"input": "input", "reference": "gold"})
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["predictions"]["columns"] == {"input": "input", "reference": "gold"}


def test_results_md_and_card_render_the_tables_when_no_text_is_given(tmp_path):
    _finish(tmp_path)
    results = (tmp_path / "run" / "results.md").read_text()
    assert results == render_tables(TABLES)
    assert "| student | 0.75 |" in results and "### costs" in results
    assert "| student | 0.75 |" in (tmp_path / "run" / "README.md").read_text()


def test_report_shows_the_record_tables_not_results_md(tmp_path):
    _finish(tmp_path, results_md="free text without any table\n")
    html = (tmp_path / "run" / "report.html").read_text()
    assert "costs" in html and "0.75" in html


def test_record_field_names_are_reserved_and_the_main_table_required(tmp_path):
    with pytest.raises(ValueError, match="record's own fields"):
        _finish(tmp_path, metrics={"timings": {}})
    with pytest.raises(ValueError, match="main table"):
        _finish(tmp_path, tables={"extra": []})
    with pytest.raises(ValueError, match="unknown roles"):
        _finish(tmp_path, prediction_columns={"gold": "gold"})


def test_normalise_timings_names_every_phase_the_same_way():
    timings = normalise_timings({"train_wall_s": 2, "train_eval_seconds": 1.5, "extract": Cost(4.0, 1.0)})
    assert timings == {"train_s": 2.0, "train_eval_s": 1.5, "extract_s": 4.0, "total_s": 7.5}
    assert normalise_timings({"train_s": 1, "total_s": 9})["total_s"] == 9
    assert normalise_timings({"train_s": 1}, total_s=5)["total_s"] == 5
    with pytest.raises(ValueError, match="twice"):
        normalise_timings({"train_s": 1, "train_seconds": 1})
    with pytest.raises(ValueError, match="finite"):
        normalise_timings({"train_s": float("nan")})
