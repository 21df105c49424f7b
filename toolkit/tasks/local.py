"""Load any local data file, a ``save_to_disk`` folder, or a Hub dataset id as a ``datasets.Dataset``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict

from toolkit.tasks.readers import DataFormatError, read_delimited, read_json_list, read_jsonl

logger = logging.getLogger(__name__)

__all__ = ["load_local"]


def _infer_column(values: list[str]) -> list[Any]:
    """Turn a column of CSV strings into ints or floats when every value parses, else keep strings."""
    for cast in (int, float):
        try:
            return [cast(v) for v in values]
        except ValueError:
            continue
    return values


def _rows_to_dataset(rows: list[dict[str, Any]], path: Path) -> Dataset:
    if not rows:
        raise DataFormatError(path, None, "no data rows")
    try:
        return Dataset.from_list(rows)
    except Exception as e:  # arrow type clashes between rows: say which file
        raise DataFormatError(path, None, f"rows do not share one schema: {e}") from e


def _is_saved_dataset_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def load_local(
    path_or_hub_id: str | os.PathLike, split: str | None = None, *, revision: str | None = None
) -> Dataset | DatasetDict:
    """Load a local data file, a ``save_to_disk`` folder, or a Hub dataset id.

    Local files by extension: ``.jsonl`` (strict, one object per line), ``.json`` (a JSON list of objects,
    or JSON lines), ``.csv`` / ``.tsv`` (header row; columns whose values all parse as int/float are
    converted), ``.parquet``. A folder written by ``Dataset.save_to_disk`` (the generated datasets) is
    loaded with ``load_from_disk``. Anything else that does not exist locally is treated as a Hub id and
    passed to ``datasets.load_dataset`` (which fails fast under ``HF_HUB_OFFLINE=1``).

    Args:
        path_or_hub_id: File, folder or Hub id.
        split: For a ``DatasetDict`` result (a saved dict or a Hub id), the split to return. Ignored for
            single files, which are one split.
        revision: For a Hub id: the branch, tag or commit to load (``--dataset_revision``).

    Returns:
        A ``Dataset`` (or a ``DatasetDict`` when ``split`` is ``None`` and the source has splits).

    Raises:
        DataFormatError: A malformed row (names file and line).
        ValueError: Unknown extension or unknown split.
    """
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir() and _is_saved_dataset_dir(path):
        ds = datasets.load_from_disk(str(path))
        return _pick_split(ds, split, str(path))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _rows_to_dataset(read_jsonl(path), path)
        if suffix == ".json":
            with open(path, encoding="utf-8") as handle:
                head = handle.read(4096).lstrip()
            if head.startswith("["):
                rows = read_json_list(path)
                for item_index, row in enumerate(rows):
                    if not isinstance(row, dict):
                        raise DataFormatError(
                            path, None, f"list item {item_index} is a {type(row).__name__}, not an object"
                        )
                return _rows_to_dataset(rows, path)
            return _rows_to_dataset(read_jsonl(path), path)
        if suffix in (".csv", ".tsv"):
            delimiter = "\t" if suffix == ".tsv" else ","
            rows = read_delimited(path, delimiter=delimiter)
            if not rows:
                raise DataFormatError(path, None, "no data rows")
            columns = {name: _infer_column([r[name] for r in rows]) for name in rows[0]}
            return datasets.Dataset.from_dict(columns)
        if suffix == ".parquet":
            return datasets.Dataset(pq.read_table(path))
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv, .tsv or .parquet)")
    if path.exists() or str(path_or_hub_id).startswith((".", "/", "~")):
        raise FileNotFoundError(f"{path}: not a data file or a save_to_disk folder")
    logger.info("Loading %s from the Hub (split=%s)", path_or_hub_id, split)
    return datasets.load_dataset(str(path_or_hub_id), split=split, revision=revision)


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    if split is None or not isinstance(ds, DatasetDict):
        return ds
    if split not in ds:
        raise ValueError(f"{where}: no split {split!r} (available: {', '.join(ds)})")
    return ds[split]
