"""One way to score label predictions, shared by the LLM students and the encoder baselines.

A generated answer is a free string; an encoder's argmax is always a label. To put both in one table, every label
prediction goes through the same three steps:

- **Strict match** (:func:`strict_label`): the answer counts as a label only if it *is* one after normalisation
  (surrounding / repeated whitespace removed, case folded: ``" playmusic "`` → ``PlayMusic``). Anything else is
  **invalid** and scores as wrong. Strict accuracy is the headline.
- **Snapped match** (:func:`snap_label`): an invalid answer is mapped to the most string-similar label (``difflib``
  ratio). Reported as a second, labelled column ("snapped"), never as the headline: it credits answers the model did
  not give.
- **Macro-F1** (:func:`label_scores`): unweighted mean of per-class F1 (``2TP / (2TP + FP + FN)``) over the **label
  set built from the training split**, plus any gold label of the scored split that train never showed (it cannot be
  predicted, so it scores 0 and drags the mean down instead of vanishing). A class with no gold row and no
  prediction scores 0 (sklearn's ``zero_division=0`` with ``labels=`` given), so on a subsample missing a class both
  model families lose the same amount. An invalid answer is a false negative for its gold class and a false
  positive for no class, exactly like an encoder mistake on the gold side. Macro-F1 is computed on strict labels.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Hashable, Sequence
from typing import Any

from toolkit.evaluation.metrics import accuracy, macro_f1

logger = logging.getLogger(__name__)

__all__ = ["averaging_labels", "label_scores", "normalize_label", "snap_label", "strict_label"]


def normalize_label(text: Any) -> str:
    """Whitespace-collapsed, case-folded form of a label or an answer."""
    return " ".join(str(text).split()).casefold()


def strict_label(pred: str | None, labels: Sequence[str]) -> str | None:
    """The label ``pred`` spells (after :func:`normalize_label`), or ``None`` when it spells none.

    When two labels collide after normalisation (``"A"`` and ``"a"``), only an exact spelling counts.
    """
    if pred is None or not str(pred).strip():
        return None
    pred = str(pred).strip()
    if pred in labels:
        return pred
    matches = [lab for lab in labels if normalize_label(lab) == normalize_label(pred)]
    return matches[0] if len(matches) == 1 else None


def snap_label(pred: str | None, labels: Sequence[str]) -> tuple[str | None, bool]:
    """``(snapped_label, valid)``: ``valid`` is True iff ``pred`` strictly matches a label (:func:`strict_label`).

    Invalid predictions snap to the most similar label (``difflib`` ratio on normalised strings); an empty / missing
    prediction snaps to nothing (``None``), since any label would be a guess.
    """
    strict = strict_label(pred, labels)
    if strict is not None:
        return strict, True
    if pred is None or not str(pred).strip() or not labels:
        return None, False
    low = normalize_label(pred)
    best = max(labels, key=lambda lab: difflib.SequenceMatcher(None, low, normalize_label(lab)).ratio())
    return best, False


def averaging_labels(labels: Sequence[Hashable], golds: Sequence[Hashable]) -> list[Hashable]:
    """Classes macro-F1 averages over: the train label set, then gold labels train never showed (logged)."""
    classes = list(dict.fromkeys(labels))
    known = set(classes)
    unseen = [g for g in dict.fromkeys(golds) if g not in known]
    if unseen:
        n_rows = sum(g not in known for g in golds)
        logger.warning(
            "%d scored rows carry %d gold label(s) absent from train (%s): no model can predict them; they count "
            "as errors and as classes with F1 = 0",
            n_rows,
            len(unseen),
            ", ".join(map(str, unseen[:5])) + (" ..." if len(unseen) > 5 else ""),
        )
    return classes + unseen


def label_scores(
    strict_preds: Sequence[Hashable | None],
    golds: Sequence[Hashable],
    labels: Sequence[Hashable],
    snapped_preds: Sequence[Hashable | None] | None = None,
) -> dict[str, float | int]:
    """Accuracy (strict and snapped), macro-F1 and the invalid count for one model on one split.

    Args:
        strict_preds: Predicted labels, ``None`` for an invalid answer (see :func:`strict_label`).
        golds: Gold labels.
        labels: The label set built from the training split.
        snapped_preds: Snapped predictions (:func:`snap_label`); defaults to ``strict_preds`` (an encoder's argmax
            is always a label, so its snapped and strict scores coincide).

    Returns:
        ``{"accuracy", "accuracy_snapped", "macro_f1", "invalid", "unseen_gold"}``; ``unseen_gold`` counts rows whose
        gold label is not in ``labels``.
    """
    snapped_preds = strict_preds if snapped_preds is None else snapped_preds
    known = set(labels)
    return {
        "accuracy": accuracy(strict_preds, golds),
        "accuracy_snapped": accuracy(snapped_preds, golds),
        "macro_f1": macro_f1(strict_preds, golds, labels=averaging_labels(labels, golds)),
        "invalid": sum(p is None or p not in known for p in strict_preds),
        "unseen_gold": sum(g not in known for g in golds),
    }
