"""Constrained decoding over a label set: the answer's label field can only be one of the training labels.

Listing every label in the prompt stops scaling at 20+ labels (SLURP's 59 intents cost more prompt tokens than the
utterance), so the label set is given at decoding time instead: a token trie over the label strings *in the answer
format* (``"intent: <label> | slots:"``, ``"topic: <label><eos>"``) drives transformers' ``prefix_allowed_tokens_fn``.
While the generated tokens are inside the trie only its children are allowed; once the path (label plus the format's
next marker) is complete, decoding is free again (the slot list). Greedy decoding under the constraint picks the
label path the model ranks highest token by token, so no answer is ever an invalid label and the free-text scorer is
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["LabelTrie", "label_paths"]

# What follows the label in each answer format: the joint task continues with its slot field, single-field tasks stop.
_FOLLOW = {"topic": None, "intent": None, "intent_slots": " | slots:"}


def label_paths(tokenizer, task: str, labels: Sequence[str], eos_ids: Sequence[int]) -> list[list[int]]:
    """Token paths that an answer of ``task`` may start with, one per (label, end marker).

    Tokenizing the whole prefix string (not the label alone) keeps the BPE merges the model saw in training.
    """
    if task not in _FOLLOW:
        raise ValueError(f"no label field to constrain for task {task!r}")
    field = "topic" if task == "topic" else "intent"
    paths = []
    for label in labels:
        follow = _FOLLOW[task]
        ids = tokenizer(f"{field}: {label}{follow or ''}", add_special_tokens=False)["input_ids"]
        paths += [list(ids)] if follow else [list(ids) + [e] for e in eos_ids]
    return paths


class LabelTrie:
    """A token trie over :func:`label_paths`; ``allowed(generated)`` is the constraint for one row.

    Args:
        paths: Token paths (see :func:`label_paths`).
        vocab_size: Size of the model's output layer (the free set once a path is complete).
    """

    def __init__(self, paths: Sequence[Sequence[int]], vocab_size: int):
        if not paths:
            raise ValueError("a label constraint needs at least one label")
        self.root: dict = {}
        for path in paths:
            node = self.root
            for tok in path:
                node = node.setdefault(int(tok), {})
        self.free = list(range(vocab_size))

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """Tokens allowed after ``generated`` (the answer so far)."""
        node = self.root
        for tok in generated:
            node = node.get(int(tok))
            if node is None or not node:  # path complete (or left the trie, which the constraint prevents): free
                return self.free
        return list(node) or self.free

    def prefix_fn(self, prompt_length: int) -> Callable:
        """``prefix_allowed_tokens_fn`` for a left-padded batch whose prompts are ``prompt_length`` tokens long."""

        def fn(batch_id, input_ids):
            return self.allowed(input_ids[prompt_length:].tolist())

        return fn
