"""Few-shot prompting baseline: the same LLM, prompted with a few labelled demonstrations, greedy decoding.

Under a multi-process launch every rank loads the model on its own device and prompts an equal share of the test
texts (:func:`toolkit.distributed.map_sharded`); every rank gets every answer back, in order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from toolkit.distributed import map_sharded
from toolkit.meter import Cost, Meter
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher


def build_few_shot_messages(
    text: str, demos: Sequence[tuple[str, str]], label_names: Sequence[str], max_chars: int = 400
) -> list[dict[str, str]]:
    """Chat messages: instruction listing the labels, demos as user/assistant turns, then the query."""

    def clip(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= max_chars else text[:max_chars] + " ..."

    system = (
        "Classify the text into exactly one of these labels: "
        + ", ".join(label_names)
        + ". Answer with the label only."
    )
    messages = [{"role": "system", "content": system}]
    for demo_text, demo_label in demos:
        messages += [{"role": "user", "content": f"Text: {clip(demo_text)}\nLabel:"}]
        messages += [{"role": "assistant", "content": demo_label}]
    messages.append({"role": "user", "content": f"Text: {clip(text)}\nLabel:"})
    return messages


def parse_label(output: str, label_names: Sequence[str]) -> str | None:
    """Map a generated answer to a label name, or ``None`` when it names none (or is ambiguous).

    Exact match (case/punctuation-insensitive) first; otherwise the label mentioned earliest as a whole word,
    provided no other label starts at the same place.
    """
    norm = re.sub(r"[^\w/&+-]+", " ", output.lower()).strip()
    names = {n.lower(): n for n in label_names}
    if norm in names:
        return names[norm]
    hits = []
    for low, name in names.items():
        match = re.search(rf"(?<![\w/]){re.escape(low)}(?![\w/])", norm)
        if match:
            hits.append((match.start(), -len(low), name))
    if not hits:
        return None
    hits.sort()
    if len(hits) > 1 and hits[0][:2] == hits[1][:2]:
        return None
    return hits[0][2]


def pick_demos(texts: Sequence[str], labels: Sequence[str], label_names: Sequence[str], per_class: int, seed: int):
    """``per_class`` seeded random demos per label, interleaved by class (so no label is always last)."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {name: [] for name in label_names}
    for text, label in zip(texts, labels):
        by_label[label].append(text)
    picked = {name: rng.sample(rows, min(per_class, len(rows))) for name, rows in by_label.items()}
    demos = [(picked[name][k], name) for k in range(per_class) for name in label_names if k < len(picked[name])]
    rng.shuffle(demos)
    return demos


def few_shot_classify(
    teacher,
    demos: Sequence[tuple[str, str]],
    texts: Sequence[str],
    label_names: Sequence[str],
    *,
    max_new_tokens: int = 8,
    max_chars: int = 400,
) -> tuple[list[str | None], list[str]]:
    """Greedy few-shot classification through a :class:`toolkit.teachers.Teacher`.

    Returns:
        ``(predictions, raw_outputs)``; a prediction is ``None`` when the output names no label (invalid).
    """
    requests = [
        GenerationRequest(
            messages=build_few_shot_messages(t, demos, label_names, max_chars=max_chars),
            n=1,
            temperature=0.0,
            max_tokens=max_new_tokens,
        )
        for t in texts
    ]
    outputs = [gens[0].text for gens in teacher.generate(requests)]
    return [parse_label(o, label_names) for o in outputs], outputs


def few_shot_baseline(
    model: str,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    test_texts: Sequence[str],
    label_names: Sequence[str],
    *,
    per_class: int = 1,
    max_test: int | None = None,
    max_new_tokens: int = 8,
    max_chars: int = 400,
    batch_size: int = 8,
    seed: int = 42,
    device: str | None = None,
) -> tuple[list[str | None], list[str], int, Cost]:
    """Prompt ``model`` (the ``hf`` teacher backend, greedy) with ``per_class`` seeded demos per label.

    Only the first ``max_test`` test texts are prompted (all when ``None``), sharded across the ranks of a
    multi-process run (every rank must call it); model loading is not charged.

    Args:
        device: This rank's torch device (default: the ``hf`` teacher's, cuda when available).

    Returns:
        ``(predictions, raw_outputs, n_demos, cost)``; a prediction is ``None`` when the output names no label.
        ``cost`` is this rank's (its share of the prompts, and the wait for the others).
    """
    teacher = load_teacher(TeacherConfig(backend="hf", model=model, batch_size=batch_size, device=device))
    demos = pick_demos(train_texts, train_labels, label_names, per_class, seed)
    n_prompted = min(max_test or len(test_texts), len(test_texts))
    if hasattr(teacher, "load"):
        teacher.load()  # model loading is excluded from every method's cost

    def classify_share(texts: list[str]) -> list[tuple[str | None, str]]:
        predictions, outputs = few_shot_classify(
            teacher, demos, texts, label_names, max_new_tokens=max_new_tokens, max_chars=max_chars
        )
        return list(zip(predictions, outputs))

    with Meter() as meter:
        answers = map_sharded(classify_share, list(test_texts[:n_prompted]))
    predictions = [prediction for prediction, _ in answers]
    outputs = [output for _, output in answers]
    return predictions, outputs, len(demos), meter.cost
