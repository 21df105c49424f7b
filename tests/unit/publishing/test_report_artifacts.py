"""toolkit.publishing.report_artifacts: report.html from a run directory's record, predictions, figures and card."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

from tests.fakes.report_runs import SECRET, make_gec_run_dir
from toolkit.publishing import reporting
from toolkit.publishing.report_artifacts import record_tables, report_from_run_dir, samples_from_predictions


def _offline(html: str) -> None:
    """Nothing in the page is fetched from elsewhere: no remote src/href, no stylesheet or script files."""
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "page loads a remote resource"
    assert "<link" not in html and not re.search(r"<script[^>]+src=", html)
    assert "@import" not in html and "url(http" not in html


def test_report_from_run_dir_reads_every_artifact(tmp_path, monkeypatch):
    run = tmp_path / "run"
    info = make_gec_run_dir(run)
    drawn, save = [], reporting._save

    def capture(fig, path):  # the figure as drawn, before it is written and closed
        drawn.append((fig, Path(path).name))
        return save(fig, path)

    monkeypatch.setattr(reporting, "_save", capture)
    html = report_from_run_dir(run, strict=True).read_text()
    _offline(html)
    # learning_curve.png is drawn from metrics.json's learning_curve: one series per metric, against the step
    ((fig, name),) = drawn
    series = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()}
    assert name == "learning_curve.png" and series == {"bleu": ([2, 4], [50.0, 57.0]), "gleu": ([2, 4], [41.0, 55.25])}
    files = re.findall(r'data-file="([^"]+)"', html)
    assert sorted(files) == sorted(info["figures"])
    assert html.index("Training and evaluation curves") < html.index("Learning curve")
    assert "lmcor · gec: run" in html  # title from the model card
    assert re.search(r'<tr class="best">\s*<td[^>]*>LMCor corrector<span class="badge">', html)
    assert html.count('class="sample-row"') == info["n_rows"]
    # GEC: outputs diffed against the source (LMCor's source-copy baseline); the markup-like source is escaped.
    assert "she <del>go</del> <ins>goes</ins> to school 3 ." in html and "&lt;b&gt;school&lt;/b&gt;" in html
    for fact in ("openai:gpt-4o-mini@api.openai.com", "runs/candidates-jfleg", "google/flan-t5-small", str(run)):
        assert fact in html, fact  # lineage: teacher -> data -> student
    assert SECRET not in html and '"learning_rate": 0.005' in unescape(html)  # the redacted run config
    assert html.index('data-stage="Teacher"') < html.index('data-stage="Data"') < html.index('data-stage="Student"')


def test_report_from_run_dir_never_fails_a_run(tmp_path, caplog):
    (tmp_path / "metrics.json").write_text("{not json")
    assert report_from_run_dir(tmp_path) is None and "could not write" in caplog.text
    with pytest.raises(json.JSONDecodeError):
        report_from_run_dir(tmp_path, strict=True)


def test_record_tables_come_main_first_and_empty_ones_are_left_out():
    metrics = {
        "tables": {
            "subset": [{"method": "a", "accuracy": 0.6}],
            "results": [{"method": "a", "accuracy": 0.5}],
            "empty": [],
        }
    }
    tables = record_tables(metrics)
    assert [t.title for t in tables] == ["Results", "subset"]
    assert tables[0].rows == [{"method": "a", "accuracy": 0.5}]
    assert record_tables({"table": [{"method": "a"}]}) == []  # only the record's field is read


def test_report_ignores_results_md(tmp_path):
    make_gec_run_dir(tmp_path)
    (tmp_path / "results.md").write_text("| method | gleu |\n| --- | --- |\n| only-in-markdown | 99 |\n")
    html = report_from_run_dir(tmp_path, strict=True).read_text()
    assert "only-in-markdown" not in html and "LMCor corrector" in html


def test_samples_follow_the_columns_the_record_names():
    row = {"text": "good film", "gold": "pos", "llmembed": "pos", "few_shot": "neg", "correct": True}
    columns = {"input": "text", "prediction": "llmembed", "reference": "gold", "facts": ["correct"]}
    (sample,) = samples_from_predictions([row], columns=columns)
    assert sample["input"] == "good film" and sample["student"] == "pos" and sample["references"] == ["pos"]
    assert sample["outputs"] == {"few_shot": "neg"} and sample["extra"] == {"correct": True}
    gec = {"input": "x", "prediction": "b", "references": ["b", "c"], "baseline:source copy": "a"}
    (sample,) = samples_from_predictions([gec], columns={"input": "input", "source": "baseline:source copy"})
    assert sample["source"] == "a" and "student" not in sample and sample["outputs"]["prediction"] == "b"


def test_report_reads_the_prediction_columns_from_the_record(tmp_path):
    make_gec_run_dir(tmp_path)
    record = json.loads((tmp_path / "metrics.json").read_text())
    record["predictions"]["columns"] = {"input": "input", "prediction": "baseline:first candidate"}
    (tmp_path / "metrics.json").write_text(json.dumps(record))
    html = report_from_run_dir(tmp_path, strict=True).read_text()
    assert "she goes to school 3 ." in html and "<del>go</del>" not in html  # no source named: no diff


def test_samples_guessed_for_run_dirs_without_columns():
    sbs = samples_from_predictions([{"id": "1", "input": "q?", "gold": "4", "prediction": "5", "correct": False}])
    assert sbs == [
        {"id": "1", "input": "q?", "student": "5", "references": ["4"], "extra": {"correct": False}, "outputs": {}}
    ]
    emb = samples_from_predictions([{"text": "good film", "gold": "pos", "llmembed_mlp": "pos", "few_shot": "neg"}])
    assert emb[0]["input"] == "good film" and emb[0]["outputs"] == {"llmembed_mlp": "pos", "few_shot": "neg"}
    long = [
        {"model": m, "task": t, "output": f"{m}-{t}-{i}", "gold": f"g{i}"}
        for m in ("multitask", "single", "encoder")
        for t in ("topic", "intent")
        for i in range(3)
    ]
    pivot = samples_from_predictions(long, max_samples=4)
    assert [s["id"] for s in pivot] == ["intent #1", "topic #1", "intent #2", "topic #2"]
    assert (
        pivot[1]["student"] == "multitask-topic-0"
        and pivot[1]["outputs"] == {"single": "single-topic-0", "encoder": "encoder-topic-0"}
        and pivot[1]["references"] == ["g0"]
    )
    tags = samples_from_predictions([{"model": "encoder", "task": "slots", "tags": ["O", "B-x"], "gold_tags": ["O"]}])
    assert tags[0]["references"] == [["O"]]  # a tag list is one reference
