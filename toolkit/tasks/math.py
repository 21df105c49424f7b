"""Math word problems: SVAMP, a safe arithmetic evaluator, and numeric answer matching.

SVAMP gold answers are equations such as ``"( 10.0 - ( 6.0 + 3.0 ) )"`` and teacher rationales end with
``"The answer is (10 - (3 + 6))."``; both are scored by evaluating the arithmetic with :func:`safe_eval`
(an ``ast`` walker, never ``eval``) and comparing numbers with :func:`numbers_match`.
"""

from __future__ import annotations

import ast
import logging
import math as _math
import operator
import os
import re

from datasets import Dataset

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import DataFormatError, read_json_list, read_jsonl_numbered, require_file

SVAMP_PALM_SPLITS = ("train", "test")

logger = logging.getLogger(__name__)

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
# Refuse absurdly long inputs before parsing: the expressions we score are a few dozen characters.
_MAX_EXPR_CHARS = 1000
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # "11,210" -> "11210" (not "175, 5")
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")


def safe_eval(expr: str) -> float:
    """Evaluate an arithmetic expression over numbers, ``+ - * /``, unary ``+``/``-`` and parentheses.

    The expression is parsed with :mod:`ast` and only number literals, those four binary operators, unary
    signs and grouping are accepted; names, calls, attribute access, subscripts, ``**``, ``//``, ``%`` and
    everything else raise ``ValueError``, so untrusted teacher output can be scored safely. Numbers are
    computed as floats (Python precedence: ``*``/``/`` bind tighter than ``+``/``-``, left-associative).

    Args:
        expr: e.g. ``"( 10.0 - ( 6.0 + 3.0 ) )"`` or ``"79 - 53"``.

    Returns:
        The value as a float.

    Raises:
        ValueError: Not a pure arithmetic expression, too long, or a non-finite result.
        ZeroDivisionError: Division by zero.
    """
    if not isinstance(expr, str):
        raise ValueError(f"expected a string expression, got {type(expr).__name__}")
    text = expr.strip()
    if not text:
        raise ValueError("empty expression")
    if len(text) > _MAX_EXPR_CHARS:
        raise ValueError(f"expression longer than {_MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not an arithmetic expression: {expr!r} ({e.msg})") from None
    value = _eval_node(tree.body, expr)
    if not _math.isfinite(value):
        raise ValueError(f"non-finite result for {expr!r}")
    return value


def _eval_node(node: ast.AST, expr: str) -> float:
    if isinstance(node, ast.Constant):
        # bool is an int subclass: refuse True/False explicitly
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        raise ValueError(f"only numbers are allowed in {expr!r}, got {node.value!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval_node(node.left, expr), _eval_node(node.right, expr)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ZeroDivisionError(f"division by zero in {expr!r}")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand, expr))
    raise ValueError(f"disallowed syntax {type(node).__name__} in {expr!r} (only numbers, + - * / and parentheses)")


def numbers_match(
    answer: float | str | None, expected: float | str | None, rel_tol: float = 1e-4, abs_tol: float = 1e-4
) -> bool:
    """Whether two numeric answers agree.

    Uses ``math.isclose(answer, expected, rel_tol=rel_tol, abs_tol=abs_tol)``: equal within 0.01 % of the larger
    magnitude, or within 1e-4 absolutely (so ``0.3333`` matches ``1/3`` and ``1e-9`` matches ``0``). The
    tolerance absorbs float rounding of divisions like ``10 / 3`` while still separating answers that
    differ by one unit. Strings are parsed with :func:`parse_number`; ``None`` or unparsable input never
    matches.
    """
    answer_value, expected_value = _to_float(answer), _to_float(expected)
    if answer_value is None or expected_value is None:
        return False
    return _math.isclose(answer_value, expected_value, rel_tol=rel_tol, abs_tol=abs_tol)


def _to_float(value: float | str | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return parse_number(value)


def parse_number(text: str) -> float | None:
    """Read a numeric answer from text: an arithmetic expression, else the only number in it.

    ``"(79 - 53)"`` -> 26.0, ``"26 apples"`` -> 26.0, ``"$1,200."`` -> 1200.0; ``"no idea"`` and
    ``"(28 - 13) and (28 - 15)"`` (several numbers, not one expression) -> ``None``.
    """
    text = text.strip().rstrip(".").strip()
    if not text:
        return None
    try:
        return safe_eval(_THOUSANDS.sub("", text))
    except (ValueError, ZeroDivisionError):
        pass
    # Fall back to a lone number in prose ("26 apples"); several numbers ("(28 - 13) and (28 - 15)") are
    # ambiguous, and guessing the first one would turn a wrong answer into a confident label.
    numbers = [m.group(0) for m in _NUMBER_RE.finditer(text) if any(ch.isdigit() for ch in m.group(0))]
    if len(numbers) != 1:
        return None
    return float(numbers[0].replace(",", ""))


def format_number(value: float) -> str:
    """Canonical text of an answer: integers without a decimal point, other values to 6 significant digits.

    This is the ``label`` string used as a student target and for exact-match (``450.0`` -> ``"450"``,
    ``2.5`` -> ``"2.5"``, ``1/3`` -> ``"0.333333"``).
    """
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def load_svamp(
    split: str | None = "train", data_dir: str | os.PathLike | None = None, source: str = "palm"
) -> Dataset:
    """Load SVAMP math word problems.

    Args:
        split: For ``source="palm"``: ``"train"`` (800) or ``"test"`` (200), the split used by Distilling
            step-by-step. For ``source="svamp"`` the file has no splits: pass ``None`` (all 1,000) and use
            :func:`toolkit.tasks.splits.deterministic_split`.
        data_dir: Data root override.
        source: ``"palm"`` (``distill_step_by_step_palm/svamp/svamp_<split>.json``) or ``"svamp"``
            (the original ``svamp/SVAMP.json``).

    Returns:
        ``Dataset`` with ``id``, ``question`` (the full problem text), ``equation`` (gold arithmetic),
        ``answer`` (float, from :func:`safe_eval` of the equation) and ``label`` (:func:`format_number` of
        the answer). The ``svamp`` source adds ``type`` (Subtraction, Addition ...).

    Raises:
        DataFormatError: A row lacks a field or its equation does not evaluate (names file and line/item).
    """
    root = data_root(data_dir)
    rows = []
    if source == "palm":
        if split not in SVAMP_PALM_SPLITS:
            raise ValueError(f"SVAMP (palm) split must be one of {SVAMP_PALM_SPLITS}, got {split!r}")
        path = require_file(root / "distill_step_by_step_palm" / "svamp" / f"svamp_{split}.json")
        for row_index, (lineno, raw) in enumerate(read_jsonl_numbered(path)):
            if "input" not in raw or "label" not in raw:
                raise DataFormatError(path, lineno, "expected fields 'input' and 'label'")
            answer = _eval_equation(raw["label"], path, lineno)
            rows.append(
                {
                    "id": f"svamp-{split}-{row_index}",
                    "question": raw["input"],
                    "equation": raw["label"],
                    "answer": answer,
                    "label": format_number(answer),
                }
            )
    elif source == "svamp":
        if split is not None:
            raise ValueError("SVAMP.json has no splits: pass split=None and use deterministic_split")
        path = require_file(root / "svamp" / "SVAMP.json")
        for item_index, raw in enumerate(read_json_list(path)):
            try:
                body, question, equation = raw["Body"].strip(), raw["Question"].strip(), raw["Equation"]
            except (KeyError, TypeError, AttributeError):
                raise DataFormatError(path, None, f"item {item_index}: expected Body, Question, Equation") from None
            answer = _eval_equation(equation, path, None)
            if "Answer" in raw and not numbers_match(answer, raw["Answer"]):
                # SVAMP.json has one such item (chal-680: 4 - 2 + 3 recorded as 1.0); the equation is right.
                logger.warning(
                    "%s item %d: Equation gives %s but Answer is %s; using the equation",
                    path,
                    item_index,
                    answer,
                    raw["Answer"],
                )
            rows.append(
                {
                    "id": str(raw.get("ID", f"svamp-{item_index}")),
                    "question": f"{body}\n{question}",  # joined like the PaLM svamp files
                    "equation": equation,
                    "answer": answer,
                    "label": format_number(answer),
                    "type": str(raw.get("Type", "")),
                }
            )
    else:
        raise ValueError(f"unknown SVAMP source {source!r} (use 'palm' or 'svamp')")
    return Dataset.from_list(rows)


def _eval_equation(equation: str, path, line: int | None) -> float:
    try:
        return safe_eval(equation)
    except (ValueError, ZeroDivisionError) as e:
        raise DataFormatError(path, line, f"gold equation {equation!r} does not evaluate: {e}") from None
