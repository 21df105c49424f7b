"""Multi-task instruction tuning for classification, intent detection and slot filling (QLoRA recipe).

Zhao et al. 2024 ("Advancing Single- and Multi-task Text Classification through LLM Fine-tuning") fine-tune one
causal LM on topic classification and on intent + slots *jointly*, matching two-model setups. This module holds the
pieces that make that reproducible with any causal LM:

- **Instruction formats** with parseable answers (:func:`build_prompt`, :func:`build_completion`):
  ``topic: sci.space`` · ``intent: PlayMusic`` · ``slots: artist=the beatles; service=spotify`` · joint
  ``intent: PlayMusic | slots: artist=the beatles; service=spotify`` (``slots: none`` when there are none).
- **Slots ↔ BIO** (:func:`bio_to_slots`, :func:`slots_to_bio`): the compact ``slot=value`` list is mapped back onto
  the utterance's words for span F1. Repeated values are matched left to right (each value searched after the
  previous match, on untagged words first); values not found among the words are *counted*, never silently dropped.
- **Label scoring** (:mod:`toolkit.label_scoring`, shared with the encoder baselines): strict accuracy (an answer
  that is not a label after normalisation is wrong) is the headline; snapped accuracy (closest label) is a second,
  labelled column; macro-F1 over the train label set.
- **Task mixtures** (:func:`mixture_probabilities`, :func:`sample_mixture`): weighted, proportional or
  temperature sampling over tasks, seeded.
- **Scoring** (:func:`score_task`) and batched greedy generation (:func:`generate_answers`).

Data loading (:func:`load_task_splits`, from :mod:`toolkit.multitask_data`), model building
(:func:`build_lora_model`) and adapter merging (:func:`merge_adapter`) are here too, so
``recipes/qlora_multitask.py`` stays thin.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from toolkit.label_constraint import LabelTrie, label_paths
from toolkit.label_scoring import snap_label
from toolkit.multitask_data import TaskSplits, load_task_splits, parse_task_spec
from toolkit.train_budget import ComputeMeter, tokens_trained

logger = logging.getLogger(__name__)

TASK_TYPES = ("topic", "intent", "slots", "intent_slots")
MIXTURE_STRATEGIES = ("weighted", "proportional", "temperature")
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
    "MIXTURE_STRATEGIES",
    "TASK_TYPES",
    "TaskSplits",
    "bio_to_slots",
    "build_completion",
    "build_lora_model",
    "build_prompt",
    "format_slots",
    "generate_answers",
    "load_task_splits",
    "merge_adapter",
    "mixture_probabilities",
    "parse_answer",
    "parse_slots",
    "parse_task_spec",
    "sample_mixture",
    "score_task",
    "slots_to_bio",
    "snap_label",
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
    from toolkit.metrics import bio_spans

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
            them (71 SLURP intents would cost more prompt tokens than the utterance itself: larger label sets are
            given at decoding time instead, see :mod:`toolkit.label_constraint`).
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
        ``(metrics, predictions)``. Label fields follow :mod:`toolkit.label_scoring`: ``{field}_accuracy`` is strict
        (the headline: an answer that is not a label after normalisation is wrong), ``{field}_accuracy_snapped``
        maps it to the closest label first, ``{field}_invalid`` counts invalid answers, ``macro_f1`` (strict, over
        the train label set). Slots: ``slot_f1``, ``slot_precision``, ``slot_recall``, ``slots_not_found``,
        ``slots_malformed``, ``slots_missing_field``; the joint task adds ``exact_match`` (strict intent right *and*
        every tag right). ``n`` = number of rows. Each prediction holds ``label`` (strict, ``None`` when invalid)
        and ``snapped_label``.
    """
    from toolkit.label_scoring import label_scores
    from toolkit.metrics import slot_f1

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


# ---------------------------------------------------------------------------------------------------- mixture


def mixture_probabilities(
    sizes: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
    strategy: str = "weighted",
    temperature: float = 1.0,
) -> dict[str, float]:
    """Sampling probability per task.

    - ``weighted``: ``p_i ∝ w_i`` (weights from the YAML; all 1 → uniform over tasks).
    - ``proportional``: ``p_i ∝ w_i · n_i`` (examples-proportional; big tasks dominate).
    - ``temperature``: ``p_i ∝ (w_i · n_i)^(1/T)`` (T=1 is proportional, T→∞ uniform; T5/mT5-style).

    Raises:
        ValueError: on an unknown strategy, non-positive temperature, negative weight, empty or zero-mass mixture.
    """
    if strategy not in MIXTURE_STRATEGIES:
        raise ValueError(f"unknown mixture strategy {strategy!r}; expected one of {MIXTURE_STRATEGIES}")
    if not sizes:
        raise ValueError("empty task mixture")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    weights = dict(weights or {})
    unknown = set(weights) - set(sizes)
    if unknown:
        raise ValueError(f"weights given for tasks not in the mixture: {sorted(unknown)}")
    mass = {}
    for name, n in sizes.items():
        w = float(weights.get(name, 1.0))
        if w < 0 or n < 0:
            raise ValueError(f"task {name!r}: negative weight or size ({w}, {n})")
        if strategy == "weighted":
            mass[name] = w
        elif strategy == "proportional":
            mass[name] = w * n
        else:
            mass[name] = (w * n) ** (1.0 / temperature) if w * n > 0 else 0.0
    total = sum(mass.values())
    if total <= 0 or not math.isfinite(total):
        raise ValueError(f"task mixture has no mass: {mass}")
    return {name: m / total for name, m in mass.items()}


def sample_mixture(datasets: Mapping[str, Any], probabilities: Mapping[str, float], num_samples: int, seed: int = 42):
    """Draw ``num_samples`` rows from several datasets with the given task probabilities (seeded).

    Task counts are multinomial draws; within a task, rows are taken from a seeded permutation, cycling through
    fresh permutations when a task is drawn more often than it has rows (epochs over small tasks). The result is
    shuffled and gets a ``task`` column with the mixture key.

    Args:
        datasets: ``{task_name: datasets.Dataset}`` sharing the same columns (e.g. ``prompt``, ``completion``).
        probabilities: ``{task_name: p}`` from :func:`mixture_probabilities`.
        num_samples: Total rows to draw.
        seed: RNG seed.
    """
    import numpy as np
    from datasets import concatenate_datasets

    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    names = list(datasets)
    if set(names) != set(probabilities):
        raise ValueError(f"datasets {sorted(names)} and probabilities {sorted(probabilities)} name different tasks")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(num_samples, [probabilities[n] for n in names])
    parts = []
    for name, count in zip(names, counts):
        ds = datasets[name]
        if count == 0:
            continue
        if len(ds) == 0:
            raise ValueError(f"task {name!r} has no rows but was drawn {count} times")
        idx: list[int] = []
        while len(idx) < count:
            idx.extend(rng.permutation(len(ds)).tolist())
        part = ds.select(idx[:count])
        parts.append(part.add_column("task", [name] * count) if "task" not in part.column_names else part)
    mixed = concatenate_datasets(parts)
    logger.info("Task mixture: %s", dict(zip(names, counts.tolist())))
    return mixed.shuffle(seed=seed)


# ------------------------------------------------------------------------------------------------------- data


def truncate_texts(texts: Sequence[str], tokenizer, max_tokens: int) -> list[str]:
    """Cut each text to its first ``max_tokens`` tokens of ``tokenizer`` (long 20NG posts → CPU-sized prompts).

    Done on the text, before prompt formatting, so the answer is never truncated away and the encoder baseline
    sees exactly the same words.
    """
    if max_tokens <= 0:
        return list(texts)
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]))
    return out


def to_prompt_completion(splits: TaskSplits, rows, use_chat: bool = True):
    """Rows → TRL prompt-completion dataset (conversational when ``use_chat``, else plain strings)."""
    from datasets import Dataset

    prompts, completions = [], []
    for row in rows:
        user = build_prompt(splits.task, row, splits.labels)
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
    """Greedy answers for user messages, batched with left padding.

    With ``task`` and ``labels`` the label field is decoded under a :class:`~toolkit.label_constraint.LabelTrie`
    (constrained decoding: the answer's label is always one of ``labels``).

    Returns:
        ``(texts, stats)`` with ``stats = {"seconds", "prompt_tokens", "generated_tokens", "tokens_per_second"}``
        (generated tokens per second of wall time, prefill included).
    """
    import torch

    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation needs the prompt flush against the new tokens
    eos = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None and im_end not in eos:
        eos.append(im_end)  # chat templates end turns with <|im_end|>, not always the tokenizer's EOS
    device = next(model.parameters()).device
    _guard_bnb_cpu_packing(model)
    trie = None
    if labels and task in ("topic", "intent", "intent_slots"):
        vocab = model.get_output_embeddings().weight.shape[0]
        trie = LabelTrie(label_paths(tokenizer, task, labels, eos), vocab)
    texts, n_prompt, n_gen = [], 0, 0
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(prompts), batch_size):
            batch = [chat_prompt(tokenizer, p) for p in prompts[i : i + batch_size]]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id,
                    prefix_allowed_tokens_fn=trie.prefix_fn(enc["input_ids"].shape[1]) if trie else None,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            n_prompt += int(enc["attention_mask"].sum())
            for seq in new:
                keep = []
                for tok in seq.tolist():
                    if tok in eos or tok == tokenizer.pad_token_id:
                        break
                    keep.append(tok)
                n_gen += len(keep)
                texts.append(tokenizer.decode(keep, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    seconds = time.perf_counter() - t0
    stats = {
        "seconds": seconds,
        "prompt_tokens": n_prompt,
        "generated_tokens": n_gen,
        "tokens_per_second": n_gen / seconds if seconds else 0.0,
    }
    return texts, stats


def _guard_bnb_cpu_packing(model) -> None:
    """Work around a bitsandbytes 0.50.2 CPU bug before inference on a 4-bit model.

    In eval mode on CPUs with AVX512-BF16, ``Linear4bit.forward`` repacks weights for a fast kernel, reshaping the
    absmax to ``(out, in // blocksize)``; layers whose input size is not a multiple of the quantization block size
    (64) crash there (``shape '[32, 0]' is invalid``). Those layers keep the generic dequantize path.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:  # no bitsandbytes, no 4-bit layers
        return
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if isinstance(module, Linear4bit) and state is not None and state.shape[1] % state.blocksize:
            module.support_avx512bf16_for_cpu = False


# ------------------------------------------------------------------------------------------ model / adapters


def build_lora_model(
    model_name: str,
    *,
    quantization: bool = True,
    gradient_checkpointing: bool = False,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: Sequence[str] | str = "all-linear",
):
    """Load a causal LM (4-bit NF4 + double quant when ``quantization``) and return ``(model, LoraConfig)``.

    The LoRA config is handed to TRL's ``SFTTrainer`` (``peft_config=``), which wraps the model. For a 4-bit model
    :func:`peft.prepare_model_for_kbit_training` runs first: it upcasts the non-quantized weights (norms,
    embeddings) to fp32 for stable training and, when asked, turns on gradient checkpointing with input grads.
    """
    from peft import LoraConfig, prepare_model_for_kbit_training

    from toolkit.models import load_causal_lm

    model = load_causal_lm(model_name, quantization="4bit" if quantization else None)
    if quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    if targets == ["all-linear"]:  # PEFT only understands the shorthand as a plain string (YAML gives a list)
        targets = "all-linear"
    config = LoraConfig(
        r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    return model, config


def merge_adapter(adapter_dir: str, base_model: str, output_dir: str, dtype: str | None = None) -> str:
    """Merge a LoRA adapter into a full-precision copy of its base and save a standalone checkpoint.

    Merging into 4-bit weights would re-quantize (lossy, and unsupported for saving on CPU), so — as QLoRA does —
    the base is reloaded *unquantized* (fp32 on CPU, the checkpoint dtype / bf16 on GPU), the adapter applied and
    ``merge_and_unload`` folds ``B·A·alpha/r`` into the weights. The tokenizer is saved alongside.

    Returns:
        ``output_dir``.
    """
    from peft import PeftModel

    from toolkit.models import load_causal_lm, load_tokenizer

    base = load_causal_lm(base_model, dtype=dtype)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.save_pretrained(output_dir, safe_serialization=True)
    load_tokenizer(adapter_dir if _has_tokenizer(adapter_dir) else base_model).save_pretrained(output_dir)
    logger.info("Merged adapter %s into %s -> %s", adapter_dir, base_model, output_dir)
    return output_dir


def _has_tokenizer(path: str) -> bool:
    from pathlib import Path

    return any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))


def train_lora_sft(
    model_name: str, train_dataset, args, *, quantization: bool = True, eval_dataset=None, **lora_kwargs
):
    """Fine-tune a (Q)LoRA adapter with TRL's ``SFTTrainer`` on a prompt-completion dataset, loss on completions.

    Args:
        model_name: Causal LM reference (``local:smollm2-135m``, a path, a Hub id).
        train_dataset: ``prompt`` / ``completion`` dataset (see :func:`to_prompt_completion`); extra columns such
            as ``task`` are dropped.
        args: A ``trl.SFTConfig``; ``completion_only_loss`` is forced on, ``gradient_checkpointing`` is honoured,
            ``resume_from_checkpoint`` is a checkpoint folder (see :func:`toolkit.tracking.resume_checkpoint`).
        quantization: 4-bit NF4 (QLoRA) when True, plain LoRA on the full-precision model otherwise.
        eval_dataset: Optional prompt-completion dev rows: the dev loss is logged every ``args.eval_steps``.
        **lora_kwargs: ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``target_modules`` for :func:`build_lora_model`.

    Returns:
        ``(trainer, info)``; ``info = {"train_seconds", "train_cpu_seconds", "train_steps", "train_tokens",
        "train_tokens_per_second", "train_loss", "trainable_params", "log_history"}`` where ``train_tokens`` counts
        the non-padding tokens (prompt + answer) of the rows actually trained on.
    """
    import torch
    from trl import SFTTrainer

    from toolkit.configs import apply_cpu_safe_defaults
    from toolkit.models import load_tokenizer

    apply_cpu_safe_defaults(args)
    args.completion_only_loss = True
    tokenizer = load_tokenizer(model_name)
    model, peft_config = build_lora_model(
        model_name, quantization=quantization, gradient_checkpointing=bool(args.gradient_checkpointing), **lora_kwargs
    )
    keep = [c for c in train_dataset.column_names if c not in ("prompt", "completion")]
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset.remove_columns(keep) if keep else train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    # TRL casts QLoRA adapters to bf16; keep them fp32 (PEFT's default): a resumed run gets fp32 adapters (PEFT
    # upcasts what it loads), so bf16 ones would make a killed-and-resumed run drift from an uninterrupted one.
    for param in trainer.model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    with ComputeMeter() as meter:
        out = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint or None)
    seconds = meter.wall_s
    world = max(1, args.world_size)
    rows_seen = trainer.state.global_step * args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    tokens = tokens_trained([len(ids) for ids in trainer.train_dataset["input_ids"]], rows_seen)
    info = {
        "train_seconds": seconds,
        "train_cpu_seconds": meter.cpu_s,
        "train_peak_rss_mb": meter.peak_rss_mb,
        "model_memory_mb": trainer.model.get_memory_footprint() / 2**20,  # weights + buffers: what 4-bit shrinks
        "train_steps": trainer.state.global_step,
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / seconds if seconds else 0.0,
        "train_loss": out.training_loss,
        "trainable_params": trainable,
        "log_history": list(trainer.state.log_history),
    }
    return trainer, info
