"""Multi-task instruction tuning for classification, intent detection and slot filling: the paper's method.

Zhao et al. 2024 ("Advancing Single- and Multi-task Text Classification through LLM Fine-tuning") fine-tune one
causal LM on topic classification and on intent + slots *jointly*, matching two-model setups. This module holds the
pieces that make that reproducible with any causal LM:

- **Instruction formats** with parseable answers (:func:`build_prompt`, :func:`build_completion`,
  :func:`to_prompt_completion`): ``topic: sci.space`` · ``intent: PlayMusic`` · ``slots: artist=the beatles;
  service=spotify`` · joint ``intent: PlayMusic | slots: artist=the beatles; service=spotify`` (``slots: none`` when
  there are none).
- **Slots ↔ BIO** (:func:`bio_to_slots`, :func:`slots_to_bio`): the compact ``slot=value`` list is mapped back onto
  the utterance's words for span F1. Repeated values are matched left to right (each value searched after the
  previous match, on untagged words first); values not found among the words are *counted*, never silently dropped.
- **Label scoring** (:mod:`toolkit.evaluation.label_scoring`, shared with the encoder baselines): strict accuracy (an answer
  that is not a label after normalisation is wrong) is the headline; snapped accuracy (closest label) is a second,
  labelled column; macro-F1 over the train label set.
- **Answers and scores** (:func:`generate_answers`, optionally decoded over the label set with
  :mod:`toolkit.models.label_constraint`; :func:`score_task`; :func:`evaluate`).

Task mixtures are in :mod:`toolkit.methods.multitask.mixture`, data loading in :mod:`toolkit.methods.multitask.data`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from accelerate.utils import gather_object
from datasets import Dataset

from toolkit.distributed import map_sharded, num_processes
from toolkit.evaluation.label_scoring import label_scores, snap_label
from toolkit.evaluation.metrics import bio_spans, slot_f1
from toolkit.methods.multitask.data import TASK_TYPES, TaskSplits
from toolkit.models.label_constraint import LabelTrie, label_paths
from toolkit.models.students import generate

logger = logging.getLogger(__name__)

NO_SLOTS = "none"
# Answer-field names per task type: what the model must emit, in this order.
FIELDS = {"topic": ("topic",), "intent": ("intent",), "slots": ("slots",), "intent_slots": ("intent", "slots")}
_INSTRUCTIONS = {
    "topic": "Classify the topic of the text. Answer as 'topic: <label>'.",
    "intent": "Detect the intent of the utterance. Answer as 'intent: <intent>'.",
    "slots": "Extract the slots of the utterance. Answer as 'slots: name=value; name=value' or 'slots: none'.",
    "intent_slots": (
        "Detect the intent and extract the slots of the utterance. "
        "Answer as 'intent: <intent> | slots: name=value; name=value' (slots: none if there are none)."
    ),
}

__all__ = [
    "FIELDS",
    "TASK_TYPES",
    "bio_to_slots",
    "build_completion",
    "build_prompt",
    "chat_prompt",
    "evaluate",
    "format_slots",
    "generate_answers",
    "parse_answer",
    "parse_slots",
    "score_task",
    "sharded_answers",
    "scored_ids",
    "slots_to_bio",
    "to_prompt_completion",
    "two_model_exact_match",
]


def _check_task(task: str) -> None:
    if task not in TASK_TYPES:
        raise ValueError(f"unknown task type {task!r}; expected one of {TASK_TYPES}")


# ---------------------------------------------------------------------------------------------- slots <-> BIO


def bio_to_slots(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """Spans of a BIO sequence as ``(slot, value)`` pairs in utterance order (value = the span's words joined by a space).

    Uses conlleval semantics (an ``I-X`` after ``O`` or another type opens a new span), like the span F1.

    Raises:
        ValueError: when tokens and tags differ in length or a tag is not BIO.
    """
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    return [(typ, " ".join(tokens[s:e])) for typ, s, e in bio_spans(list(tags))]


def _find_span(words: list[str], value: list[str], start: int, tags: list[str]) -> int | None:
    n = len(value)
    for i in range(start, len(words) - n + 1):
        if words[i : i + n] == value and all(t == "O" for t in tags[i : i + n]):
            return i
    return None


def slots_to_bio(tokens: Sequence[str], slots: Sequence[tuple[str, str]]) -> tuple[list[str], dict[str, int]]:
    """Place ``(slot, value)`` pairs back onto ``tokens`` as BIO tags.

    Matching is case-insensitive on whitespace-split words. Each value is searched from the end of the previous
    match (slots are emitted in utterance order, so a repeated value like "the" in "play the song the" lands on the
    right occurrence), falling back to the first free occurrence from the start; words already tagged are never
    re-tagged, so a slot repeated with the same value takes the next occurrence.

    Returns:
        ``(tags, stats)`` with ``stats = {"placed", "not_found"}``: ``not_found`` counts values that are empty, not
        among the words, or only at already-tagged positions (hallucinated or duplicated slots).
    """
    words = [t.lower() for t in tokens]
    tags = ["O"] * len(words)
    stats = {"placed": 0, "not_found": 0}
    cursor = 0
    for name, value in slots:
        value_words = value.lower().split()
        start = None
        if value_words and name:
            start = _find_span(words, value_words, cursor, tags)
            if start is None:
                start = _find_span(words, value_words, 0, tags)
        if start is None:
            stats["not_found"] += 1
            continue
        tags[start] = f"B-{name}"
        for i in range(start + 1, start + len(value_words)):
            tags[i] = f"I-{name}"
        cursor = start + len(value_words)
        stats["placed"] += 1
    return tags, stats


def format_slots(slots: Sequence[tuple[str, str]]) -> str:
    """``[("artist", "the beatles")]`` → ``"artist=the beatles"`` (``"none"`` when empty)."""
    return "; ".join(f"{name}={value}" for name, value in slots) if slots else NO_SLOTS


def parse_slots(text: str) -> tuple[list[tuple[str, str]], int]:
    """Inverse of :func:`format_slots`: ``"a=x; b=y"`` → ``([("a", "x"), ("b", "y")], n_malformed)``.

    Items without ``=`` or with an empty name are malformed: counted, not returned.
    """
    text = text.strip()
    if not text or text.lower() == NO_SLOTS:
        return [], 0
    slots, malformed = [], 0
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            malformed += 1
            continue
        slots.append((name.strip(), value.strip()))
    return slots, malformed


# ------------------------------------------------------------------------------------------ prompts / answers


def build_prompt(task: str, row: Mapping[str, Any], labels: Sequence[str] | None = None, max_listed: int = 10) -> str:
    """The user message for one example.

    Args:
        task: One of :data:`TASK_TYPES`.
        row: ``{"text"}`` for ``topic``; ``{"tokens"}`` (or ``{"text"}``) for the intent / slot tasks.
        labels: Label set (topic labels or intents); listed in the prompt when there are at most ``max_listed`` of
            them (59 SLURP intents would cost more prompt tokens than the utterance itself: larger label sets are
            given at decoding time instead, see :mod:`toolkit.models.label_constraint`).
    """
    _check_task(task)
    text = row["text"] if task == "topic" or "tokens" not in row else " ".join(row["tokens"])
    lines = [_INSTRUCTIONS[task]]
    if labels is not None and task != "slots" and len(labels) <= max_listed:
        kind = "Topics" if task == "topic" else "Intents"
        lines.append(f"{kind}: {', '.join(labels)}")
    lines.append(f"{'Text' if task == 'topic' else 'Utterance'}: {text}")
    return "\n".join(lines)


def build_completion(task: str, row: Mapping[str, Any], label_names: Sequence[str] | None = None) -> str:
    """The target answer for one example (see the module docstring for the formats)."""
    _check_task(task)
    if task == "topic":
        label = row["label"]
        return f"topic: {label_names[label] if isinstance(label, int) and label_names else label}"
    parts = []
    if task in ("intent", "intent_slots"):
        parts.append(f"intent: {row['intent']}")
    if task in ("slots", "intent_slots"):
        parts.append(f"slots: {format_slots(bio_to_slots(row['tokens'], row['slot_tags']))}")
    return " | ".join(parts)


def parse_answer(text: str) -> dict[str, str]:
    """``"intent: X | slots: a=b"`` → ``{"intent": "X", "slots": "a=b"}``; only the first line is read.

    Unknown keys are kept (scoring ignores them); parts without ``key:`` are dropped. The model may continue past
    its answer (no EOS learnt yet), hence the first-line cut.
    """
    first = text.strip().split("\n", 1)[0]
    out: dict[str, str] = {}
    for part in first.split(" | "):
        key, sep, value = part.partition(":")
        if sep and key.strip() and key.strip().lower() not in out:
            out[key.strip().lower()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------------------- scoring


def score_task(
    task: str, rows: Sequence[Mapping[str, Any]], outputs: Sequence[str], labels: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score generated answers for one task against gold rows.

    Args:
        task: One of :data:`TASK_TYPES`.
        rows: Gold rows (``text``/``label`` for topic; ``tokens``/``slot_tags``/``intent`` otherwise). Topic labels
            must already be names (strings).
        outputs: Raw generations, aligned with ``rows``.
        labels: Label set for topic / intent (required there), built from the training split.

    Returns:
        ``(metrics, predictions)``. Label fields follow :mod:`toolkit.evaluation.label_scoring`: ``{field}_accuracy`` is strict
        (the headline: an answer that is not a label after normalisation is wrong), ``{field}_accuracy_snapped``
        maps it to the closest label first, ``{field}_invalid`` counts invalid answers, ``macro_f1`` (strict, over
        the train label set). Slots: ``slot_f1``, ``slot_precision``, ``slot_recall``, ``slots_not_found``,
        ``slots_malformed``, ``slots_missing_field``; the joint task adds ``exact_match`` (strict intent right *and*
        every tag right). ``n`` = number of rows. Each prediction holds ``label`` (strict, ``None`` when invalid)
        and ``snapped_label``.
    """
    _check_task(task)
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} gold rows but {len(outputs)} outputs")
    if not rows:
        raise ValueError("nothing to score: no rows")
    label_field = {"topic": "topic", "intent": "intent", "intent_slots": "intent"}.get(task)
    if label_field and not labels:
        raise ValueError(f"task {task!r} needs its label set to score")
    metrics: dict[str, Any] = {"n": len(rows)}
    preds: list[dict[str, Any]] = []
    for row, out in zip(rows, outputs):
        parsed = parse_answer(out)
        pred: dict[str, Any] = {"output": out}
        if label_field:
            raw = parsed.get(label_field)
            snapped, valid = snap_label(raw, labels)
            gold = row["label"] if task == "topic" else row["intent"]
            pred.update(raw_label=raw, label=snapped if valid else None, snapped_label=snapped, valid=valid, gold=gold)
        if task in ("slots", "intent_slots"):
            slots, malformed = parse_slots(parsed.get("slots", ""))
            tags, stats = slots_to_bio(row["tokens"], slots)
            pred.update(slots=slots, tags=tags, gold_tags=list(row["slot_tags"]), malformed=malformed, **stats)
            pred["missing_slots_field"] = "slots" not in parsed
        preds.append(pred)

    if label_field:
        scores = label_scores(
            [p["label"] for p in preds], [p["gold"] for p in preds], labels, [p["snapped_label"] for p in preds]
        )
        metrics[f"{label_field}_accuracy"] = scores["accuracy"]
        metrics[f"{label_field}_accuracy_snapped"] = scores["accuracy_snapped"]
        metrics[f"{label_field}_invalid"] = scores["invalid"]
        metrics["macro_f1"] = scores["macro_f1"]
    if task in ("slots", "intent_slots"):
        f1 = slot_f1([p["tags"] for p in preds], [p["gold_tags"] for p in preds])
        metrics.update(slot_f1=f1["f1"], slot_precision=f1["precision"], slot_recall=f1["recall"])
        metrics["slots_not_found"] = sum(p["not_found"] for p in preds)
        metrics["slots_malformed"] = sum(p["malformed"] for p in preds)
        metrics["slots_missing_field"] = sum(p["missing_slots_field"] for p in preds)
    if task == "intent_slots":
        metrics["exact_match"] = two_model_exact_match(preds, preds)
    return metrics, preds


def two_model_exact_match(intent_preds: Sequence[Mapping], slot_preds: Sequence[Mapping]) -> float:
    """Exact match of a two-model setup: row-aligned predictions of an intent model and a slot model.

    Both come from :func:`score_task` (``label``/``gold`` and ``tags``/``gold_tags``) on the same rows.
    """
    if len(intent_preds) != len(slot_preds) or not intent_preds:
        raise ValueError(
            f"need equally many (>0) intent and slot predictions: {len(intent_preds)} vs {len(slot_preds)}"
        )
    hits = sum(i["label"] == i["gold"] and s["tags"] == s["gold_tags"] for i, s in zip(intent_preds, slot_preds))
    return hits / len(intent_preds)


def to_prompt_completion(splits: TaskSplits, rows, use_chat: bool = True, max_listed_labels: int = 10):
    """Rows → TRL prompt-completion dataset (conversational when ``use_chat``, else plain strings).

    ``max_listed_labels``: see :func:`build_prompt` (the same value must be used at inference).
    """
    prompts, completions = [], []
    for row in rows:
        user = build_prompt(splits.task, row, splits.labels, max_listed=max_listed_labels)
        answer = build_completion(splits.task, row)
        if use_chat:
            prompts.append([{"role": "user", "content": user}])
            completions.append([{"role": "assistant", "content": answer}])
        else:  # same rendering as chat_prompt() at inference time
            prompts.append(user + "\n")
            completions.append(answer)
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


# ------------------------------------------------------------------------------------------------- generation


def chat_prompt(tokenizer, user_message: str) -> str:
    """Render a user message the way TRL renders a conversational prompt (generation prompt appended)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message}], tokenize=False, add_generation_prompt=True
        )
    return user_message + "\n"


def generate_answers(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    task: str | None = None,
    labels: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Greedy answers for user messages (:func:`toolkit.models.students.generate`, prompts rendered as TRL renders them).

    With ``task`` and ``labels`` the label field is decoded under a :class:`~toolkit.models.label_constraint.LabelTrie`
    (constrained decoding: the answer's label is always one of ``labels``).

    Returns:
        ``(texts, stats)`` with ``stats = {"seconds", "prompt_tokens", "generated_tokens", "tokens_per_second"}``.
    """
    eos = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None and im_end not in eos:
        eos.append(im_end)  # chat templates end turns with <|im_end|>, not always the tokenizer's EOS
    trie = None
    if labels and task in ("topic", "intent", "intent_slots"):
        vocab = model.get_output_embeddings().weight.shape[0]
        trie = LabelTrie(label_paths(tokenizer, task, labels, eos), vocab)
    ids = [tokenizer(chat_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    return generate(
        model,
        tokenizer,
        prompt_ids=ids,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        eos_token_ids=eos,
        constraint=trie.prefix_fn if trie else None,
        return_stats=True,
        synced_gpus=num_processes() > 1,  # ranks step together: FSDP's forward passes are collectives
    )


def sharded_answers(model, tokenizer, prompts: Sequence[str], **generation) -> tuple[list[str], dict[str, float]]:
    """:func:`generate_answers` with the prompts sharded over every process, answers gathered in prompt order.

    Every rank must call it with the same prompts (under FSDP / ZeRO-3 a forward pass needs all of them). Timing is
    the wall time of the whole sharded job; generated tokens are summed over the ranks.

    Returns:
        ``(texts, stats)`` as :func:`generate_answers` returns them, for all prompts.
    """
    shard_stats = []

    def answer(shard: list[str]) -> list[str]:
        texts, stats = generate_answers(model, tokenizer, shard, **generation)
        shard_stats.append(stats)
        return texts

    start = time.perf_counter()
    texts = map_sharded(answer, prompts)
    seconds = time.perf_counter() - start
    every_rank = gather_object(shard_stats)  # the same list on one process
    totals = {key: sum(stats[key] for stats in every_rank) for key in ("prompt_tokens", "generated_tokens")}
    return texts, totals | {
        "seconds": seconds,
        "tokens_per_second": totals["generated_tokens"] / seconds if seconds else 0.0,
    }


def scored_ids(rows) -> list[str]:
    """Each scored row's ``id`` (see :mod:`toolkit.methods.multitask.data`), else its position."""
    if "id" in getattr(rows, "column_names", ()):
        return [str(row_id) for row_id in rows["id"]]
    return [f"row{i}" for i in range(len(rows))]


def evaluate(
    name: str,
    model,
    tokenizer,
    splits: Sequence[TaskSplits],
    *,
    max_new_tokens: int,
    batch_size: int,
    constrained: bool = True,
    max_listed_labels: int = 10,
) -> tuple[dict[str, dict], list[dict]]:
    """Generate (sharded over the processes, see :func:`sharded_answers`) and score every task's ``test`` rows.

    Every rank returns the same results and rows.

    Returns:
        ``({task: metrics + infer_seconds + gen_tokens_per_second}, prediction rows tagged with model, task and the
        test row's ``id``)``: ids are unique per (model, task), not per file.
    """
    results, rows = {}, []
    for sp in splits:
        prompts = [build_prompt(sp.task, r, sp.labels, max_listed=max_listed_labels) for r in sp.test]
        outputs, gen = sharded_answers(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            task=sp.task,
            labels=sp.labels if constrained else None,
        )
        metrics, preds = score_task(sp.task, list(sp.test), outputs, sp.labels)
        results[sp.name] = metrics | {
            "infer_seconds": gen["seconds"],
            "gen_tokens_per_second": gen["tokens_per_second"],
        }
        rows += [{"model": name, "task": sp.name, "id": row_id} | p for row_id, p in zip(scored_ids(sp.test), preds)]
        logger.info("%s on %s: %s", name, sp.name, {k: v for k, v in metrics.items() if isinstance(v, float)})
    return results, rows
