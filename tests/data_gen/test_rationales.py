"""data_gen/rationales.py: parsing into explicit failures, teacher accuracy, and the PaLM import."""

from __future__ import annotations

import json

from datasets import Dataset
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Seq2SeqTrainingArguments

from data_gen import rationales
from toolkit.generation.jobs import read_jsonl
from toolkit.generation.rationales import PALM_TEACHER_ID
from toolkit.methods.step_by_step.collator import StepByStepCollator
from toolkit.methods.step_by_step.data import build_train_examples, load_rows
from toolkit.methods.step_by_step.trainer import StepByStepSeq2SeqTrainer
from toolkit.testing.tiny_models import build_tiny_t5


def _run(args):
    return rationales.main(*rationales.make_parser().parse_args_and_config(args))


def _job_args(server, model, inp, demos, tmp_path, *extra):
    """A svamp rationales job against ``server`` with one demonstration."""
    args = {
        "--backend": "openai",
        "--model": model,
        "--base_url": server.base_url,
        "--api_key": "k",
        "--input_file": str(inp),
        "--demo_dataset": str(demos),
        "--demo_split": "",
        "--num_demos": "1",
        "--task": "svamp",
        "--input_template": "Q: {task_input}",
        "--output_template": "A: {rationale} The answer is {teacher_label}.",
        "--output_dir": str(tmp_path / "out"),
        "--cache_path": str(tmp_path / "c.sqlite"),
        "--progress": "false",
    }
    return [part for pair in args.items() for part in pair] + list(extra)


def _write_svamp(inp, demos, count=12):
    inp.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"{i} plus 2 apples?", "label": str(i + 2)}) + "\n"
            for i in range(count)
        )
    )
    demo = {"id": "d0", "question": "1 plus 1?", "rationale": "1 + 1 = 2.", "teacher_label": "2", "label": "2"}
    demos.write_text(json.dumps(demo) + "\n")


def test_rationales_parse_failures_are_explicit(fake_openai, tmp_path):
    inp, demos = tmp_path / "svamp.jsonl", tmp_path / "demos.jsonl"
    _write_svamp(inp, demos)

    def responder(prompt, index, seed, body):
        question = int(prompt.rsplit("Q: ", 1)[1].split(" ", 1)[0])
        if question % 4 == 0:
            return " I am not sure about this one."  # no answer phrase -> parse failure
        answer = question + 2 if question % 4 != 3 else question + 5  # every 4th (question % 4 == 3) is wrong
        return f" {question} + 2 = {answer}. The answer is ({question} + {answer - question}).\n\nQ: next question"

    fake_openai.responder = responder
    summary = _run(_job_args(fake_openai, "fake", inp, demos, tmp_path))
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
    assert len(rows) == 40 and {r["teacher_id"] for r in rows} == {PALM_TEACHER_ID}
    assert all((r["teacher_label"] is None) == (not r["parse_ok"]) for r in rows)
    assert all(r["teacher_label"] in r["choices"] for r in rows if r["parse_ok"])
    assert 0.5 < summary["parse_rate"] <= 1.0 and 0.3 < summary["teacher_accuracy"] <= 1.0


def test_reasoning_teacher_traces_become_rationales_a_student_trains_on(fake_openai, tmp_path):
    inp, demos = tmp_path / "svamp.jsonl", tmp_path / "demos.jsonl"
    _write_svamp(inp, demos, count=6)

    def responder(prompt, index, seed, body):
        i = int(prompt.rsplit("Q: ", 1)[1].split(" ", 1)[0])
        return f"The answer is ({i} + 2)."

    fake_openai.responder = responder
    thinking = '{"chat_template_kwargs": {"enable_thinking": true}}'
    args = _job_args(fake_openai, "fake-reasoner", inp, demos, tmp_path, "--prompt_format", "chat")
    summary = _run([*args, "--rationale_source", "reasoning", "--extra_body", thinking])
    rows = read_jsonl(tmp_path / "out" / "data.jsonl")
    assert summary["parse_ok"] == 6
    assert all(r.body["chat_template_kwargs"] == {"enable_thinking": True} for r in fake_openai.requests)
    for row in rows:
        assert row["reasoning_content"].startswith("Let me think step by step.")
        assert row["rationale"] == row["reasoning_content"]
        assert row["teacher_label"] == str(int(row["id"][1:]) + 2)

    # The same job with rationales parsed from the answer keeps the trace as a column only.
    parsed = _run(
        [*args, "--rationale_source", "answer", "--extra_body", thinking, "--output_dir", str(tmp_path / "parsed")]
    )
    assert parsed["new_samples"] == 0, "the rationale source is parsing, not a new teacher call"
    parsed_rows = read_jsonl(tmp_path / "parsed" / "data.jsonl")
    assert all(r["rationale"] != r["reasoning_content"] for r in parsed_rows)

    student_rows, _ = load_rows(str(tmp_path / "out"), "train", task="svamp")
    examples, stats = build_train_examples(student_rows, mode="task_prefix", label_source="llm")
    assert stats["n_used"] == 6
    assert {e["rationale"] for e in examples} == {r["reasoning_content"] for r in rows}
    model_dir = build_tiny_t5(tmp_path / "t5")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    collator = StepByStepCollator(tokenizer, is_seq2seq=True, mode="task_prefix", max_input_length=64)
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / "student"),
        max_steps=2,
        per_device_train_batch_size=3,
        logging_steps=1,
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        save_strategy="no",
    )
    trainer = StepByStepSeq2SeqTrainer(
        model=AutoModelForSeq2SeqLM.from_pretrained(model_dir),
        args=training_args,
        train_dataset=Dataset.from_list(examples),
        data_collator=collator,
        alpha=0.5,
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "rationale_loss" in entry]
    assert len(logged) == 2, "both steps train the rationale task on the reasoning traces"
