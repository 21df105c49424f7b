"""The data root every real-data loader reads, and the shared plumbing of the loaders in one import.

Every loader in :mod:`toolkit.tasks` reads the read-only data folder (``../shared/data`` next to the
repository, or ``$TOOLKIT_DATA_DIR``) found by :func:`data_root`, through the strict readers of
:mod:`toolkit.tasks.readers`; :func:`~toolkit.tasks.local.load_local` loads any local file or Hub id and
:func:`~toolkit.tasks.splits.deterministic_split` is the one train/dev/test split. They are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolkit.tasks.local import load_local
from toolkit.tasks.readers import (
    DataFormatError,
    read_aligned,
    read_delimited,
    read_delimited_numbered,
    read_json_list,
    read_jsonl,
    read_jsonl_numbered,
    read_lines,
    require_file,
)
from toolkit.tasks.splits import deterministic_split

__all__ = [
    "DATA_DIR_ENV",
    "DataFormatError",
    "data_root",
    "deterministic_split",
    "load_local",
    "read_aligned",
    "read_delimited",
    "read_delimited_numbered",
    "read_json_list",
    "read_jsonl",
    "read_jsonl_numbered",
    "read_lines",
    "require_file",
]

DATA_DIR_ENV = "TOOLKIT_DATA_DIR"
# <repo root> is the parent of the ``toolkit`` package directory; the shared data sits beside the repo.
_REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Locate the real-data root folder.

    Resolution order: the explicit ``data_dir`` argument, else ``$TOOLKIT_DATA_DIR``, else
    ``<repo root>/../shared/data`` (repo root = the parent of the ``toolkit`` package directory).

    Args:
        data_dir: Explicit data folder; wins over everything else.

    Returns:
        The resolved folder.

    Raises:
        FileNotFoundError: The chosen folder does not exist (the message says how to point at one).
    """
    if data_dir is not None:
        root, origin = Path(data_dir), "the data_dir argument"
    elif os.environ.get(DATA_DIR_ENV):
        root, origin = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        root, origin = _REPO_ROOT.parent / "shared" / "data", "the default <repo>/../shared/data"
    root = root.expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data root {root} (from {origin}) does not exist. Set {DATA_DIR_ENV}=/path/to/data "
            "(the folder holding jfleg/, wmt22_general/, snips/ ...) or pass data_dir=..."
        )
    return root
