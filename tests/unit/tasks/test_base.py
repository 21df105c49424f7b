"""toolkit.tasks.base: the data root comes from --data_dir, $TOOLKIT_DATA_DIR, or a source checkout's default."""

from __future__ import annotations

import pytest

from toolkit.tasks import base
from toolkit.tasks.base import data_root


def test_data_root_resolution_order(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    arg_dir = tmp_path / "arg"
    arg_dir.mkdir()
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(env_dir))
    assert data_root() == env_dir
    assert data_root(arg_dir) == arg_dir


def test_data_root_missing_names_both_ways_to_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLKIT_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="--data_dir.*TOOLKIT_DATA_DIR"):
        data_root()


def test_source_checkout_defaults_to_shared_data_beside_the_repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").write_text("[project]\n")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(base, "_PACKAGE_PARENT", repo)
    assert base.source_checkout_root() == repo
    assert data_root() == tmp_path / "shared" / "data"


def test_installed_package_has_no_default(tmp_path, monkeypatch):
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)  # would be the default of a checkout: never guessed
    monkeypatch.delenv("TOOLKIT_DATA_DIR", raising=False)
    monkeypatch.setattr(base, "_PACKAGE_PARENT", site_packages)
    assert base.source_checkout_root() is None
    with pytest.raises(FileNotFoundError, match="No data root.*--data_dir.*TOOLKIT_DATA_DIR"):
        data_root()
