"""Few-shot prompting baseline: the same LLM, prompted with a few labelled demonstrations, greedy decoding."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from toolkit.meter import Cost, CostMeter
from toolkit.teachers import GenerationRequest, TeacherConfig, load_teacher


def build_few_shot_messages(
    text: str, demos: Sequence[tuple[str, str]], label_names: Sequence[str], max_chars: int = 400
) -> list[dict[str, str]]:
    """Chat messages: instruction listing the labels, demos as user/assistant turns, then the query."""

    def clip(t: str) -> str:
        t = " ".join(t.split())
        return t if len(t) <= max_chars else t[:max_chars] + " ..."

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
        m = re.search(rf"(?<![\w/]){re.escape(low)}(?![\w/])", norm)
        if m:
            hits.append((m.start(), -len(low), name))
    if not hits:
        return None
    hits.sort()
    if len(hits) > 1 and hits[0][:2] == hits[1][:2]:
        return None
    return hits[0][2]


def pick_demos(texts: Sequence[str], labels: Sequence[str], label_names: Sequence[str], per_class: int, seed: int):
    """``per_class`` seeded random demos per label, interleaved by class (so no label is always last)."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {n: [] for n in label_names}
    for t, y in zip(texts, labels):
        by_label[y].append(t)
    picked = {n: rng.sample(ts, min(per_class, len(ts))) for n, ts in by_label.items()}
    demos = [(picked[n][k], n) for k in range(per_class) for n in label_names if k < len(picked[n])]
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
) -> tuple[list[str | None], list[str], int, Cost]:
    """Prompt ``model`` (the ``hf`` teacher backend, greedy) with ``per_class`` seeded demos per label.

    Only the first ``max_test`` test texts are prompted (all when ``None``); model loading is not charged.

    Returns:
        ``(predictions, raw_outputs, n_demos, cost)``; a prediction is ``None`` when the output names no label.
    """
    teacher = load_teacher(TeacherConfig(backend="hf", model=model, batch_size=batch_size))
    demos = pick_demos(train_texts, train_labels, label_names, per_class, seed)
    n = min(max_test or len(test_texts), len(test_texts))
    if hasattr(teacher, "load"):
        teacher.load()  # model loading is excluded from every method's cost
    with CostMeter() as m:
        preds, raw = few_shot_classify(
            teacher, demos, test_texts[:n], label_names, max_new_tokens=max_new_tokens, max_chars=max_chars
        )
    return preds, raw, len(demos), m.cost
