"""Intent detection + slot filling: SNIPS (BIO files) and SLURP (bracketed span annotations).

Both loaders return ``id, text, tokens: list[str], slot_tags: list[str]`` (BIO over whitespace tokens,
``len(tokens) == len(slot_tags)``) and ``intent``; ``text`` is ``" ".join(tokens)``.
"""

from __future__ import annotations

import os
import re

from datasets import Dataset, DatasetDict

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_aligned, read_jsonl_numbered, require_file
from toolkit.tasks.splits import deterministic_split

SNIPS_SPLITS = ("train", "valid", "test")
SLURP_SPLITS = ("devel",)
SLURP_DERIVED_SPLITS = ("train", "dev", "test")
# "[slot_type : value words]" as in SLURP's sentence_annotation (MASSIVE's annot_utt form).
_SPAN = re.compile(r"\[\s*([^\[\]:]+?)\s*:\s*([^\[\]]*?)\s*\]")


def load_snips(split: str = "train", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load SNIPS (``snips/<split>/seq.in``, ``seq.out``, ``label``): 13,084 / 700 / 700 rows, 7 intents.

    The files carry trailing spaces; tokens and tags are whitespace-split, so the spaces vanish.

    Raises:
        DataFormatError: Files not line-aligned, or a line whose token and tag counts differ (file + line).
    """
    if split not in SNIPS_SPLITS:
        raise ValueError(f"SNIPS split must be one of {SNIPS_SPLITS}, got {split!r}")
    folder = data_root(data_dir) / "snips" / split
    cols = read_aligned({"seq_in": folder / "seq.in", "seq_out": folder / "seq.out", "label": folder / "label"})
    rows = []
    for row_index, (words, tags, intent) in enumerate(zip(cols["seq_in"], cols["seq_out"], cols["label"])):
        tokens, slot_tags = words.split(), tags.split()
        if len(tokens) != len(slot_tags):
            raise DataFormatError(
                folder / "seq.out",
                row_index + 1,
                f"{len(slot_tags)} tags for {len(tokens)} tokens in {folder / 'seq.in'}",
            )
        _check_bio(slot_tags, folder / "seq.out", row_index + 1)
        if not intent.strip():
            raise DataFormatError(folder / "label", row_index + 1, "empty intent")
        rows.append(
            {
                "id": f"snips-{split}-{row_index}",
                "text": " ".join(tokens),
                "tokens": tokens,
                "slot_tags": slot_tags,
                "intent": intent.strip(),
            }
        )
    return Dataset.from_list(rows)


def _check_bio(tags: list[str], path, line: int) -> None:
    for tag in tags:
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise DataFormatError(path, line, f"not a BIO tag: {tag!r}")


def spans_to_bio(annotation: str) -> tuple[list[str], list[str]]:
    """Convert a ``"[slot : value]"`` annotated utterance to whitespace tokens and BIO tags.

    The brackets and ``slot :`` prefixes are removed and the plain text is split on whitespace. A token
    takes the slot of the first span it overlaps: ``B-slot`` on the span's first token, ``I-slot`` after.
    Punctuation glued to a span (``"[person : robert], what"``) stays in the same whitespace token
    (``"robert,"`` -> ``B-person``), so tokens always equal ``plain_text.split()``.

    Example:
        ``"wake me up at [time : five am] [date : this week]"`` ->
        ``(["wake", "me", "up", "at", "five", "am", "this", "week"],
        ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"])``

    Raises:
        ValueError: Unbalanced or malformed brackets (a ``[`` or ``]`` left after removing valid spans).
    """
    chars: list[str] = []
    owner: list[int] = []  # per character: span number, or -1 outside spans
    slot_types: list[str] = []
    pos = 0
    for match in _SPAN.finditer(annotation):
        outside = annotation[pos : match.start()]
        chars.extend(outside)
        owner.extend([-1] * len(outside))
        slot_types.append(match.group(1).strip())
        value = match.group(2)
        chars.extend(value)
        owner.extend([len(slot_types) - 1] * len(value))
        pos = match.end()
    rest = annotation[pos:]
    chars.extend(rest)
    owner.extend([-1] * len(rest))
    plain = "".join(chars)
    if "[" in plain or "]" in plain:
        raise ValueError(f"malformed span annotation (unbalanced or nested brackets): {annotation!r}")
    tokens, tags = [], []
    seen_spans: set[int] = set()
    for match in re.finditer(r"\S+", plain):
        spans = [o for o in owner[match.start() : match.end()] if o >= 0]
        tokens.append(match.group(0))
        if not spans:
            tags.append("O")
            continue
        span = spans[0]
        tags.append(("I-" if span in seen_spans else "B-") + slot_types[span])
        seen_spans.add(span)
    return tokens, tags


def load_slurp(split: str = "devel", data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load SLURP text (``slurp/devel.jsonl``, 2,033 utterances, 59 intents) with BIO slots.

    The intent is ``<scenario>_<action>``, the label SLURP's official evaluation scores (59 in devel). The raw
    ``intent`` field is kept as ``raw_intent``: it has 71 values, some of them broken (``query``, ``hue_lightup``
    where the scenario/action pair says ``iot_hue_lightup``). Tokens come from ``sentence_annotation`` (case
    preserved; SLURP's ``sentence`` field is sometimes lower-cased) via :func:`spans_to_bio`. Only ``devel``
    exists here; ``"train"``/``"dev"``/``"test"`` return the parts of :func:`split_slurp` with its defaults.

    Returns:
        ``id, text, tokens, slot_tags, intent, raw_intent, scenario``.

    Raises:
        DataFormatError: Missing fields or malformed span brackets (file + line).
    """
    if split in SLURP_DERIVED_SPLITS:
        return split_slurp(load_slurp("devel", data_dir))[split]
    if split not in SLURP_SPLITS:
        raise ValueError(f"SLURP split must be one of {SLURP_SPLITS + SLURP_DERIVED_SPLITS}, got {split!r}")
    path = require_file(data_root(data_dir) / "slurp" / f"{split}.jsonl")
    rows = []
    for lineno, raw in read_jsonl_numbered(path):
        missing = [k for k in ("sentence_annotation", "intent") if k not in raw]
        if missing:
            raise DataFormatError(path, lineno, f"missing field(s) {missing}")
        try:
            tokens, tags = spans_to_bio(raw["sentence_annotation"])
        except ValueError as e:
            raise DataFormatError(path, lineno, str(e)) from None
        scenario = str(raw.get("scenario") or raw["intent"].split("_", 1)[0])
        rows.append(
            {
                "id": str(raw.get("slurp_id", f"slurp-{split}-{lineno - 1}")),
                "text": " ".join(tokens),
                "tokens": tokens,
                "slot_tags": tags,
                "intent": slurp_intent(raw, scenario),
                "raw_intent": raw["intent"],
                "scenario": scenario,
            }
        )
    return Dataset.from_list(rows)


def slurp_intent(raw: dict, scenario: str) -> str:
    """``<scenario>_<action>`` (SLURP's evaluated intent) when the row has an action, else its raw ``intent``."""
    action = raw.get("action")
    return f"{scenario}_{action}" if action else raw["intent"]


def split_slurp(
    ds: Dataset, *, dev_size: int | float = 0.1, test_size: int | float = 0.2, seed: int = 42
) -> DatasetDict:
    """Deterministic train/dev/test split of SLURP's single split.

    Grouped by the lower-cased text, so an utterance repeated in the data never lands in two splits
    (see :func:`toolkit.tasks.splits.deterministic_split`).
    """
    if "_group" in ds.column_names:
        raise ValueError("column '_group' is reserved by split_slurp")
    keyed = ds.add_column("_group", [t.lower() for t in ds["text"]])
    parts = deterministic_split(keyed, dev_size=dev_size, test_size=test_size, seed=seed, group_column="_group")
    return parts.remove_columns("_group")
