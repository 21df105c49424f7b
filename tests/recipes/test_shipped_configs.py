"""Every shipped YAML config parses with its own script's parser (recipes and data-gen jobs are importable modules)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RECIPE_CONFIGS = sorted((REPO / "recipes" / "configs").glob("*/*.yaml"))
DATA_GEN_CONFIGS = sorted((REPO / "data_gen" / "configs").glob("*.yaml"))


def _script_module(script: Path):
    """The script's module by its dotted name (``recipes/lmcor.py`` -> ``recipes.lmcor``): nothing loads by path."""
    return importlib.import_module(".".join(script.relative_to(REPO).with_suffix("").parts))


def _parse(script: Path, config: Path):
    parser = _script_module(script).make_parser()
    return parser.parse_args_and_config(["--config", str(config)])


@pytest.mark.parametrize("config", RECIPE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_config_parses(config: Path):
    script = REPO / "recipes" / f"{config.parent.name}.py"
    assert script.is_file(), f"{config} has no recipe script {script}"
    parsed = _parse(script, config)
    assert parsed and all(obj is not None for obj in parsed)


def _data_gen_script(config: Path) -> Path:
    """A data_gen config names its script on a ``# script: data_gen/<x>.py`` line, else by filename prefix."""
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("# script:"):
            return REPO / line.split(":", 1)[1].strip()
    for script in sorted((REPO / "data_gen").glob("*.py")):
        if config.stem.startswith(script.stem):
            return script
    pytest.fail(f"{config}: cannot tell which data_gen script it belongs to (add a '# script: ...' line)")


@pytest.mark.parametrize("config", DATA_GEN_CONFIGS, ids=lambda p: p.name)
def test_data_gen_config_parses(config: Path):
    parsed = _parse(_data_gen_script(config), config)
    assert parsed and all(obj is not None for obj in parsed)
