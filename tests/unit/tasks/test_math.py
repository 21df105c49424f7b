"""toolkit.tasks.math: safe arithmetic, numeric matching, SVAMP loaders."""

from __future__ import annotations

import pytest

from toolkit.tasks.math import format_number, load_svamp, numbers_match, parse_number, safe_eval


@pytest.mark.parametrize(
    "expr, value",
    [
        ("2 + 3 * 4", 14.0),  # precedence
        ("(2 + 3) * 4", 20.0),  # parentheses
        ("( 10.0 - ( 6.0 + 3.0 ) )", 1.0),  # SVAMP gold style
        ("7 / 2", 3.5),  # true division, floats
        ("10 - 4 - 3", 3.0),  # left associativity
        ("-3 + +5", 2.0),  # unary signs
        ("1e3 / 4", 250.0),
    ],
)
def test_safe_eval_arithmetic(expr, value):
    assert safe_eval(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",  # calls + names
        "x + 1",  # names
        "(1).real",  # attribute access
        "[1, 2][0]",  # subscripts / lists
        "2 ** 10",  # power is not in the grammar
        "7 // 2",
        "7 % 2",
        "True + 1",  # bools are not numbers here
        "'a' * 3",
        "lambda: 1",
        "",
        "1 +",
    ],
)
def test_safe_eval_rejects(expr):
    with pytest.raises(ValueError):
        safe_eval(expr)


def test_safe_eval_division_by_zero():
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        safe_eval("5 / (3 - 3)")


def test_numbers_match_tolerance():
    assert numbers_match(1 / 3, "0.33333")
    assert numbers_match("26", 26.0)
    assert numbers_match(1e-9, 0)
    assert not numbers_match(26, 27)
    assert not numbers_match(1000.0, 1000.2)  # 2e-4 relative: outside 1e-4
    assert not numbers_match(None, 0) and not numbers_match("n/a", 0)


def test_parse_and_format_number():
    assert parse_number("(79 - 53).") == 26.0
    assert parse_number("26 apples") == 26.0
    assert parse_number("$1,200.") == 1200.0
    assert parse_number("(11,210 - 10) / 2") == 5600.0  # thousands separators inside an expression
    assert parse_number("(175, 5)") is None  # a tuple, not a number
    assert parse_number("(28 - 13) and (28 - 15)") is None  # ambiguous, not the first number
    assert parse_number("no idea") is None
    assert format_number(450.0) == "450" and format_number(2.5) == "2.5" and format_number(1 / 3) == "0.333333"


def test_load_svamp_palm_counts_and_gold(data_root):
    train, test = load_svamp("train"), load_svamp("test")
    assert (len(train), len(test)) == (800, 200)
    row = test[0]  # "...10 seeds in each flower bed ... 45 flowerbeds. How many seeds?"
    assert row["equation"] == "( 10.0 * 45.0 )" and row["answer"] == 450.0 and row["label"] == "450"


def test_load_svamp_json(data_root):
    ds = load_svamp(None, source="svamp")
    assert len(ds) == 1000
    assert ds[0]["id"] == "chal-1" and ds[0]["answer"] == 51.0
    assert ds[0]["question"].endswith("\nHow much do you have to pay to buy each pack?")
    # chal-680's recorded Answer (1.0) is wrong; the equation (4 - 2) + 3 = 5 wins
    assert ds[679]["id"] == "chal-680" and ds[679]["answer"] == 5.0
    with pytest.raises(ValueError, match="no splits"):
        load_svamp("train", source="svamp")
