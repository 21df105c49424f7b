"""report.html opened in a real headless Chromium (Debian's package), as a person would open it.

For a recipe run report and a data-gen job report, each test checks that:
- the page loads with no console error, no uncaught exception, no error log entry (e.g. a resource that failed to
  load) and no request to anything but the file itself / ``data:`` URIs (it works offline);
- the results / statistics table has exactly the expected rows, and the best row is the expected one;
- every figure decodes and renders with a non-zero natural size and a non-zero size on the page;
- the sample rows are all there (with word-diff marks for GEC) and the row filter hides non-matching rows;
- the lineage reads teacher -> data (-> student);
- a screenshot PNG is written next to report.html (``report_screenshot.png``) and is a real, page-sized image.

Skipped with a reason when /usr/bin/chromium is absent (``.ci/run`` installs it with apt-get when it can).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.browser.cdp import CHROMIUM, SKIP_REASON, inspect_page
from tests.fakes.report_runs import make_gec_run_dir, run_candidates_job
from toolkit.generation.jobs import read_jsonl
from toolkit.publishing.report_artifacts import report_from_run_dir

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

IMAGES = """Promise.all([...document.images].map(img => img.decode().then(
    () => [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width, img.getBoundingClientRect().height],
    () => [0, 0, 0, 0])))"""
VISIBLE_ROWS = "[...document.querySelectorAll('.sample-row')].filter(e => e.offsetParent !== null).length"


def filter_rows(words: str) -> str:
    """JS: type ``words`` into the filter box, count the rows left visible, then clear the filter again."""
    return f"""(() => {{
        const box = document.getElementById('filter');
        box.value = {json.dumps(words)}; box.dispatchEvent(new Event('input'));
        const shown = {VISIBLE_ROWS};
        box.value = ''; box.dispatchEvent(new Event('input'));
        return shown; }})()"""


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_clean(report) -> None:
    assert report.console_errors == [], report.console_errors
    assert report.exceptions == [], report.exceptions
    assert report.log_errors == [], report.log_errors
    assert report.external_requests == [], report.external_requests


def test_run_report_in_chromium(tmp_path):
    run = tmp_path / "run"
    expected = make_gec_run_dir(run)
    page = report_from_run_dir(run, strict=True)
    report = inspect_page(
        page,
        {
            "result_rows": "document.querySelectorAll('table.results tbody tr').length",
            "best": "[...document.querySelectorAll('tr.best td:first-child')].map(td => td.childNodes[0].textContent)",
            "images": IMAGES,
            "sample_rows": VISIBLE_ROWS,
            "diff_marks": "document.querySelectorAll('.sample-row ins, .sample-row del').length",
            "filtered": filter_rows("t5 WENT"),  # every word, any case
            "after_filter": VISIBLE_ROWS,
            "stages": "[...document.querySelectorAll('.stage h3')].map(h => h.textContent)",
            "command": "document.getElementById('command-line').textContent",
        },
    )
    assert_clean(report)
    values = report.values
    assert values["result_rows"] == expected["n_results"] and values["best"] == [expected["best"]]
    assert len(values["images"]) == len(expected["figures"])
    assert all(w > 0 and h > 0 and shown_w > 0 and shown_h > 0 for w, h, shown_w, shown_h in values["images"]), values[
        "images"
    ]
    assert values["sample_rows"] == expected["n_rows"] and values["diff_marks"] > 0
    assert values["filtered"] == 1 and values["after_filter"] == expected["n_rows"]
    assert values["stages"] == ["Teacher", "Data", "Student"] and values["command"]
    assert report.screenshot == run / "report_screenshot.png"
    width, height = png_size(report.screenshot)
    assert width >= 1000 and height > 900  # the whole page, not an empty viewport


def test_data_gen_report_in_chromium(fake_openai, tmp_path):
    fake_openai.set_faults(0.3, ("500",))
    summary, out = run_candidates_job(fake_openai, tmp_path, "--max_retries", "0")
    on_disk = json.loads((out / "summary.json").read_text())
    report = inspect_page(
        out / "report.html",
        {
            "stat_rows": "document.querySelectorAll('#summary tbody tr').length",
            "failure_rows": "document.querySelectorAll('#failures-table tbody tr').length",
            "sample_rows": VISIBLE_ROWS,
            "candidates": "document.querySelectorAll('.sample-row .out.candidate').length",
            "images": IMAGES,
            "filtered": filter_rows("s3"),
            "stages": "[...document.querySelectorAll('.stage h3')].map(h => h.textContent)",
        },
    )
    assert_clean(report)
    values = report.values
    assert values["stat_rows"] == sum(not isinstance(x, (dict, list)) for x in on_disk.values())
    assert values["failure_rows"] == summary["failed"] > 0 and values["sample_rows"] == summary["completed"] > 0
    assert values["candidates"] == 3 * summary["completed"] and values["images"] == []
    failed_ids = {f["item_id"] for f in read_jsonl(out / "failures.jsonl")}
    assert values["filtered"] == (0 if "s3" in failed_ids else 1)
    assert values["stages"][:2] == ["Teacher", "Data"] and "Student" not in values["stages"]
    width, height = png_size(out / "report_screenshot.png")
    assert width >= 1000 and height > 500
