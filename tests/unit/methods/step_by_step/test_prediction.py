"""Label-task inference: prompts built as in training, one answer line per row, rows kept in order."""

from __future__ import annotations

from toolkit.methods.step_by_step import prediction
from toolkit.methods.step_by_step.config import StepByStepConfig
from toolkit.models.students import load_student


def test_predict_labels_prefixes_the_label_task_and_keeps_row_order(tiny_t5_dir, monkeypatch):
    model, tokenizer, seq2seq = load_student(str(tiny_t5_dir))
    prompts = []

    def fake_generate(model, tokenizer, inputs, **kwargs):
        prompts.extend(inputs)
        return [f"{text}\nsecond line" for text in inputs]  # only the first line is the answer

    monkeypatch.setattr(prediction, "generate", fake_generate)
    rows = [{"input": f"question {i}"} for i in range(5)]
    config = StepByStepConfig(mode="task_prefix", generation_batch_size=2)
    predictions = prediction.predict_labels(model, tokenizer, rows, config, is_seq2seq=seq2seq)
    assert predictions == [f"predict: question {i}" for i in range(5)]
    assert prompts == predictions
    standard = StepByStepConfig(mode="standard")
    assert prediction.predict_labels(model, tokenizer, rows[:1], standard, is_seq2seq=seq2seq) == ["question 0"]


def test_generate_predictions_decodes_greedily_with_the_real_student(tiny_t5_dir):
    model, tokenizer, seq2seq = load_student(str(tiny_t5_dir))
    inputs = ["A man plays.", "A dog runs in the park today."]
    batched = prediction.generate_predictions(
        model, tokenizer, inputs, is_seq2seq=seq2seq, prefix="predict: ", max_new_tokens=4, batch_size=2
    )
    one_by_one = [
        prediction.generate_predictions(
            model, tokenizer, [text], is_seq2seq=seq2seq, prefix="predict: ", max_new_tokens=4, batch_size=1
        )[0]
        for text in inputs
    ]
    assert len(batched) == 2 and all("\n" not in text for text in batched)
    assert batched == one_by_one  # an answer does not depend on the rows batched with it
