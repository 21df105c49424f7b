"""toolkit.publishing.report_html: self-contained pages, best row, GEC diff, lineage, redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.report_runs import RESULT_ROWS, SECRET, make_gec_run_dir
from toolkit.publishing.report_html import ResultsTable, best_row_index, redact_argv, word_diff_html, write_run_report

REPO = Path(__file__).resolve().parents[3]


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
