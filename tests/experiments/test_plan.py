"""Plan plumbing: command lines from overrides, dev choices filled in, dev-choice rules, refused plans."""

from __future__ import annotations

import pytest
import yaml

from experiments.plan import PlanError, fill_choices, load_plan, to_argv
from experiments.runner import pick


def test_overrides_become_a_command_line():
    argv = to_argv({"k": 4, "no_candidates": True, "lora": False, "eval_generate_steps": [20, 40], "pool_path": ""})
    assert argv == [
        "--k",
        "4",
        "--no_candidates",
        "true",
        "--lora",
        "false",
        "--eval_generate_steps",
        "20",
        "40",
        "--pool_path",
        "",
    ]


def test_choices_fill_whole_values_typed_and_parts_as_text():
    filled = fill_choices({"max_steps": "{choice:steps}", "run_name": "k4-{choice:steps}", "k": 4}, {"steps": 480})
    assert filled == {"max_steps": 480, "run_name": "k4-480", "k": 4}


@pytest.mark.parametrize(
    "rule, tolerance, higher_is_better, expected",
    [("min", 0, False, 80), ("max", 0, False, 10), ("plateau", 0.05, False, 40), ("plateau", 1.0, True, 10)],
)
def test_dev_choice_rules(rule, tolerance, higher_is_better, expected):
    points = [(10, 1.0), (20, 0.6), (40, 0.52), (80, 0.5)]
    assert pick(points, rule, tolerance, higher_is_better) == expected


def _plan(**changes) -> dict:
    plan = {
        "name": "p",
        "recipe": "lmcor",
        "config": None,
        "budget": "b",
        "seeds": [0, 1, 2],
        "test_rows": 10,
        "primary_metric": "chrf",
        "statistic": "seed_row_bootstrap",
        "runs": [{"name": "a", "overrides": {}}],
    }
    plan.update(changes)
    return plan


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"statistic": "t-test"}, "statistic 't-test'"),
        ({"runs": [{"name": "a"}, {"name": "a"}]}, "duplicate run names"),
        ({"runs": [{"name": "a", "overrides": {"max_train_samples": None}}]}, "null"),
        ({"runs": [{"name": "a", "seed": 1}]}, "unknown keys"),
        ({"tabels": []}, "unknown keys"),
        ({"tables": [{"name": "t", "rows": [{"label": "x", "run": "b"}]}]}, "names no plan run"),
        (
            {
                "tables": [
                    {
                        "name": "t",
                        "rows": [{"label": "x", "run": "a"}],
                        "comparisons": [{"system": "x", "baseline": "y"}],
                    }
                ]
            },
            "compares 'y'",
        ),
        ({"runs": [{"name": "a", "overrides": {"train_source": "{run_dir:b}"}}]}, "no earlier run"),
    ],
)
def test_bad_plans_are_refused_naming_the_file(tmp_path, changes, message):
    path = tmp_path / "bad_plan.yaml"
    path.write_text(yaml.safe_dump(_plan(**changes)))
    with pytest.raises(PlanError, match="bad_plan.yaml") as error:
        load_plan(path)
    assert message in str(error.value)
