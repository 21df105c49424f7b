"""toolkit.publishing.report_html / report_artifacts: self-contained pages, best row, GEC diff, samples, lineage, redaction."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

from tests.fakes.report_runs import RESULT_ROWS, SECRET, make_gec_run_dir
from toolkit.publishing import reporting
from toolkit.publishing.report_artifacts import record_tables, report_from_run_dir, samples_from_predictions
from toolkit.publishing.report_html import ResultsTable, best_row_index, redact_argv, word_diff_html, write_run_report

REPO = Path(__file__).resolve().parents[2]


def _offline(html: str) -> None:
    """Nothing in the page is fetched from elsewhere: no remote src/href, no stylesheet or script files."""
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "page loads a remote resource"
    assert "<link" not in html and not re.search(r"<script[^>]+src=", html)
    assert "@import" not in html and "url(http" not in html


def test_best_row_index_rules():
    rows = [{"m": "a", "bleu": 10.0, "ter": 60.0}, {"m": "b", "bleu": 30.0, "ter": 40.0}, {"m": "c", "bleu": 30.0}]
    assert best_row_index(rows) == (1, "bleu")  # ties: the first row wins
    assert best_row_index(rows, metric="ter") == (1, "ter")  # lower is better
    with_oracle = [*rows, {"m": "oracle selection (corpus BLEU search)", "bleu": 99.0}]
    assert best_row_index(with_oracle) == (1, "bleu")  # an upper bound is not a system
    # A test-split column wins over a dev one; markdown strings are read by their leading number.
    sbs = [
        {"system": "student", "dev_acc": "0.9", "test_acc": "0.70"},
        {"system": "t", "dev_acc": "–", "test_acc": "0.8"},
    ]
    assert best_row_index(sbs) == (1, "test_acc")
    assert best_row_index([{"m": "a", "note": "x"}]) == (None, None)
    assert ResultsTable(rows=rows, best=-1).best is None and ResultsTable(rows=rows).best == 1


def test_word_diff_marks_gec_edits_and_escapes():
    html = str(word_diff_html("she go to <b>school</b> .", "she goes to <b>school</b> today ."))
    assert "<del>go</del> <ins>goes</ins>" in html and "<ins>today</ins>" in html
    assert "&lt;b&gt;school&lt;/b&gt;" in html and "<b>" not in html
    assert str(word_diff_html("same words", "same words")) == "same words"


def test_redact_argv_hides_secret_flag_values():
    argv = [
        "recipes/lmcor.py",
        "--api_key",
        "sk-1",
        "--hub_token=hf_2",
        "--openai-api-key",
        "sk-3",
        "--max_tokens",
        "64",
    ]
    assert redact_argv(argv) == [
        "recipes/lmcor.py",
        "--api_key",
        "<redacted>",
        "--hub_token=<redacted>",
        "--openai-api-key",
        "<redacted>",
        "--max_tokens",
        "64",
    ]


def test_run_report_is_self_contained_marks_best_diffs_and_redacts(tmp_path, monkeypatch):
    env_secret = "hf_ENVSECRET_abcdefgh"
    monkeypatch.setenv("HF_TOKEN", env_secret)
    info = make_gec_run_dir(tmp_path / "run")
    page = write_run_report(
        tmp_path / "run",
        title="LMCor on JFLEG",
        results=RESULT_ROWS,
        best="LMCor corrector",
        images=[tmp_path / "run" / "training_curves.png", tmp_path / "run" / "missing.png"],
        samples=[
            {
                "id": "x<1>",
                "input": "she go <script>alert(1)</script> .",
                "outputs": {"copy": "she go ."},
                "student": f"she goes . {env_secret}",
                "references": ["she goes ."],
            },
        ],
        diff=True,
        lineage={"teacher_id": "openai:gpt-4o-mini", "base_model": "t5-small", "extra": {"api_key": SECRET}},
        command=["recipes/lmcor.py", "--api_key", SECRET],
        config={"api_key": SECRET, "lr": 0.1},
    )
    html = page.read_text()
    _offline(html)
    assert page == tmp_path / "run" / "report.html" and info["n_results"] == 5
    assert SECRET not in html and env_secret not in html and "&lt;redacted&gt;" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    body = html.split('<table class="results"', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr") == 1 + len(RESULT_ROWS)
    best = re.findall(r'<tr class="best">\s*<td[^>]*>([^<]*)<span class="badge">best', body)
    assert best == ["LMCor corrector"]
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)) == 1
    assert "<del>go &lt;script&gt;alert(1)&lt;/script&gt;</del> <ins>goes</ins>" in html  # diffed vs the input


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


def test_samples_from_each_recipes_predictions():
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


def test_templates_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "toolkit.publishing"
    ]
    package = REPO / "toolkit" / "publishing"
    templates = sorted(p.relative_to(package) for p in (package / "templates").glob("*"))
    assert templates and all(any(t.match(p) for p in patterns) for t in templates), (templates, patterns)


def test_unknown_best_name_is_inferred_with_a_warning(tmp_path, caplog):
    page = write_run_report(tmp_path, title="t", results=RESULT_ROWS, best="no such row", command="x")
    assert page.name == "report.html" and "no results row is named 'no such row'" in caplog.text
    assert re.search(r'<tr class="best">\s*<td[^>]*>LMCor corrector<span', page.read_text())


def test_lineage_stages_order_and_single_values():
    from toolkit.publishing.report_html import lineage_stages

    stages = lineage_stages({"teacher_id": ["openai:x"], "sampling": ["a", "b"], "base_model": "t5", "api_key": "sk"})
    assert [s["name"] for s in stages] == ["Teacher", "Data", "Student", "Other"]
    assert stages[0]["fields"] == [("teacher_id", "openai:x"), ("sampling", '["a", "b"]')]
    assert stages[3]["fields"] == [("api_key", "<redacted>")]
    assert [s["name"] for s in lineage_stages({"teacher_id": "t"}, student=False)] == ["Teacher", "Data"]
