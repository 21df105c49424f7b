"""The data root every real-data loader reads.

Every loader in :mod:`toolkit.tasks` reads the read-only data folder (the one holding ``jfleg/``,
``wmt22_general/``, ``snips/`` ...) found by :func:`data_root`: a recipe's ``--data_dir``, else
``$TOOLKIT_DATA_DIR``, else, in a source checkout only, ``../shared/data`` next to the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "data_root", "source_checkout_root"]

DATA_DIR_ENV = "TOOLKIT_DATA_DIR"
# The directory holding the ``toolkit`` package: the repository root in a source checkout, site-packages otherwise.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def source_checkout_root() -> Path | None:
    """The repository root when the toolkit runs from a source checkout (``pyproject.toml`` beside the package)."""
    return _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else None


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Locate the real-data root folder.

    Resolution order: the explicit ``data_dir`` argument (a recipe's ``--data_dir``), else ``$TOOLKIT_DATA_DIR``,
    else ``<repo>/../shared/data`` when running from a source checkout (an installed wheel has no default).

    Args:
        data_dir: Explicit data folder; wins over everything else.

    Returns:
        The resolved folder.

    Raises:
        FileNotFoundError: No folder was given, or the chosen one does not exist (the message names both ways to
            point at one).
    """
    how = f"pass --data_dir /path/to/data or set {DATA_DIR_ENV}=/path/to/data (the folder holding jfleg/, snips/ ...)"
    repo = source_checkout_root()
    if data_dir is not None:
        root, origin = Path(data_dir), "--data_dir"
    elif os.environ.get(DATA_DIR_ENV):
        root, origin = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    elif repo is not None:
        root, origin = repo.parent / "shared" / "data", "the source checkout's default <repo>/../shared/data"
    else:
        raise FileNotFoundError(f"No data root: {how}.")
    root = root.expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Data root {root} (from {origin}) does not exist: {how}.")
    return root
