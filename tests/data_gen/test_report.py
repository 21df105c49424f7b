"""Every data-gen job writes report.html next to its data: counts, failures, candidates / rationales side by side."""

from __future__ import annotations

import json
import re
from html import unescape

from data_gen import rationales
from tests.fakes.report_runs import SECRET, run_candidates_job
from toolkit.generation.jobs import read_jsonl


def test_candidates_report_counts_failures_and_candidates(fake_openai, tmp_path):
    fake_openai.set_faults(0.3, ("500",))
    summary, out = run_candidates_job(fake_openai, tmp_path, "--max_retries", "0")
    assert 0 < summary["failed"] < 12  # some items failed, some did not
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<link" not in html
    assert SECRET not in html and '"api_key": "<redacted>"' in unescape(html)
    rows = read_jsonl(out / "data.jsonl")
    assert html.count('class="sample-row"') == len(rows) == summary["completed"]
    assert html.count('class="out candidate"') == 3 * len(rows)  # every candidate of a row, side by side
    assert "#1 greedy" in html and "#3 sample" in html and "<ins>goes</ins>" in html  # word diff vs the source
    failures = html.split('id="failures-table"', 1)[1].split("</table>", 1)[0]
    assert failures.count("<tr>") == 1 + summary["failed"] and "InternalServerError" in failures
    stats = dict(re.findall(r"<tr><td>([a-z_]+)</td><td class=\"num\">([^<]*)</td></tr>", html))
    assert stats["completed"] == str(summary["completed"]) and stats["failed"] == str(summary["failed"])
    assert "prompt_tokens" in stats and "cost_usd" in stats
    assert 'data-stage="Teacher"' in html and f"openai:fake@127.0.0.1:{fake_openai.port}" in html


def test_rationales_report_shows_parse_rate_and_labels(fake_openai, tmp_path):
    inp = tmp_path / "svamp.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": f"q{i}", "question": f"{i} plus 2?", "label": str(i + 2)}) + "\n" for i in range(8))
    )

    def responder(prompt, index, seed, body):
        question = int(prompt.rsplit("Q: ", 1)[1].split(" ", 1)[0])
        return (
            " not sure." if question % 4 == 0 else f" {question} + 2 = {question + 2}. The answer is {question + 2}."
        )

    fake_openai.responder = responder
    args = [
        "--backend",
        "openai",
        "--model",
        "fake",
        "--base_url",
        fake_openai.base_url,
        "--api_key",
        SECRET,
        "--input_file",
        str(inp),
        "--num_demos",
        "0",
        "--task",
        "svamp",
        "--input_template",
        "Q: {task_input}",
        "--output_dir",
        str(tmp_path / "out"),
        "--cache_path",
        str(tmp_path / "c.sqlite"),
        "--progress",
        "false",
    ]
    summary = rationales.main(*rationales.make_parser().parse_args_and_config(args))
    html = (tmp_path / "out" / "report.html").read_text()
    assert summary["parse_rate"] == 0.75 and '<div class="v">75.0%</div><div class="k">parse rate</div>' in html
    assert html.count("teacher label (parse failure)") == 2 and html.count("teacher label (parsed)") == 6
    assert html.count('<span class="name">gold label</span>') == 8 and "1 + 2 = 3." in html
    assert SECRET not in html


def test_shards_and_merge_each_write_a_report(fake_openai, tmp_path):
    for shard in (0, 1):
        run_candidates_job(fake_openai, tmp_path, "--num_shards", "2", "--shard_index", str(shard))
    summary, out = run_candidates_job(fake_openai, tmp_path, "--num_shards", "2", "--merge", "true")
    shards = sorted((out / "shards").glob("shard-*"))
    assert [(s / "report.html").read_text().count('class="sample-row"') for s in shards] == [6, 6]
    assert (out / "report.html").read_text().count('class="sample-row"') == 12 == summary["completed"]
