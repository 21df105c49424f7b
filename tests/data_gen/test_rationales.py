"""data_gen/rationales.py: parsing into explicit failures, teacher accuracy, and the PaLM import."""

from __future__ import annotations

import json

from data_gen import rationales
from toolkit.generation.jobs import read_jsonl


def _run(args):
    return rationales.main(*rationales.make_parser().parse_args_and_config(args))


def test_rationales_parse_failures_are_explicit(fake_openai, tmp_path):
    inp, demos = tmp_path / "svamp.jsonl", tmp_path / "demos.jsonl"
    inp.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"{i} plus 2 apples?", "label": str(i + 2)}) + "\n"
            for i in range(12)
        )
    )
    demos.write_text(
        json.dumps(
            {"id": "d0", "question": "1 plus 1?", "rationale": "1 + 1 = 2.", "teacher_label": "2", "label": "2"}
        )
        + "\n"
    )

    def responder(prompt, index, seed, body):
        question = int(prompt.rsplit("Q: ", 1)[1].split(" ", 1)[0])
        if question % 4 == 0:
            return " I am not sure about this one."  # no answer phrase -> parse failure
        answer = question + 2 if question % 4 != 3 else question + 5  # every 4th (question % 4 == 3) is wrong
        return f" {question} + 2 = {answer}. The answer is ({question} + {answer - question}).\n\nQ: next question"

    fake_openai.responder = responder
    summary = _run(
        [
            "--backend",
            "openai",
            "--model",
            "fake",
            "--base_url",
            fake_openai.base_url,
            "--api_key",
            "k",
            "--input_file",
            str(inp),
            "--demo_dataset",
            str(demos),
            "--demo_split",
            "",
            "--num_demos",
            "1",
            "--task",
            "svamp",
            "--input_template",
            "Q: {task_input}",
            "--output_template",
            "A: {rationale} The answer is {teacher_label}.",
            "--output_dir",
            str(tmp_path / "out"),
            "--cache_path",
            str(tmp_path / "c.sqlite"),
            "--progress",
            "false",
        ]
    )
    rows = read_jsonl(tmp_path / "out" / "data.jsonl")
    assert len(rows) == 12
    bad = [r for r in rows if not r["parse_ok"]]
    assert [r["id"] for r in bad] == ["q0", "q4", "q8"]
    assert all(r["teacher_label"] is None and r["teacher_completion"] for r in bad)
    good = {r["id"]: r for r in rows if r["parse_ok"]}
    assert good["q1"]["teacher_label"] == "3" and good["q1"]["rationale"] == "1 + 2 = 3."
    assert summary["parse_failures"] == 3 and summary["parse_rate"] == 0.75
    assert summary["teacher_accuracy"] == 6 / 12 and summary["teacher_accuracy_parsed"] == round(6 / 9, 4)
    assert "A: 1 + 1 = 2. The answer is 2." in fake_openai.requests[0].prompt
    assert json.loads(rows[1]["sampling"])["stop"] == ["\n\nQ:"]


def test_import_palm_cqa(data_root, tmp_path):
    summary = _run(
        [
            "--import_palm",
            "cqa",
            "--task",
            "cqa",
            "--split",
            "test",
            "--max_items",
            "40",
            "--output_dir",
            str(tmp_path / "p"),
        ]
    )
    rows = read_jsonl(tmp_path / "p" / "data.jsonl")
    assert len(rows) == 40 and {r["teacher_id"] for r in rows} == {rationales.PALM_TEACHER_ID}
    assert all((r["teacher_label"] is None) == (not r["parse_ok"]) for r in rows)
    assert all(r["teacher_label"] in r["choices"] for r in rows if r["parse_ok"])
    assert 0.5 < summary["parse_rate"] <= 1.0 and 0.3 < summary["teacher_accuracy"] <= 1.0
