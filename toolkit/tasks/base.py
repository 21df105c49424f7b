"""Shared plumbing for the real-data loaders: the data root, strict line/JSONL/CSV readers, splits.

Every loader in :mod:`toolkit.tasks` reads the read-only data folder (``../shared/data`` next to the
repository, or ``$TOOLKIT_DATA_DIR``) through the helpers here, so that a malformed input always fails
with a :class:`DataFormatError` naming the file and the 1-based line, and so that line-aligned corpora
(sources / references / system outputs) can never silently drift out of alignment.

``datasets`` is imported inside functions: ``import toolkit.tasks`` must stay cheap.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "TOOLKIT_DATA_DIR"
# <repo root> is the parent of the ``toolkit`` package directory; the shared data sits beside the repo.
_REPO_ROOT = Path(__file__).resolve().parents[2]


class DataFormatError(ValueError):
    """A data file does not have the expected format.

    The message always names the file and the 1-based line so the user can open it and look.

    Args:
        path: The offending file.
        line: 1-based line number (``None`` when the problem is not tied to one line).
        msg: What is wrong.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, msg: str):
        self.path = str(path)
        self.line = line
        self.msg = msg
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {msg}")

    def __reduce__(self):  # keep the exception picklable (datasets / multiprocessing re-raise it)
        return (type(self), (self.path, self.line, self.msg))


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


def require_file(path: Path) -> Path:
    """Return ``path`` if it is a file, else raise ``FileNotFoundError`` naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"Expected data file {path} is missing (check the data root / TOOLKIT_DATA_DIR).")
    return path


def read_lines(path: str | os.PathLike, encoding: str = "utf-8") -> list[str]:
    """Read a text file as a list of lines.

    Exactly one line terminator (``\\n`` or ``\\r\\n``) is removed per line; other whitespace is kept
    (callers decide whether trailing spaces matter). A missing final newline is tolerated, and a lone
    ``\\r`` inside a line does *not* start a new line (universal-newline mode would split there and
    break the alignment of parallel files).

    Args:
        path: The file.
        encoding: Text encoding.

    Returns:
        The lines, without terminators. An empty file gives ``[]``.
    """
    path = require_file(Path(path))
    with open(path, encoding=encoding, newline="") as f:
        text = f.read()
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":  # the file ended with a newline: that is a terminator, not an empty line
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_aligned(files: Mapping[str, str | os.PathLike], encoding: str = "utf-8") -> dict[str, list[str]]:
    """Read several line-aligned files (sources, references, system outputs) and check alignment.

    Args:
        files: Column name -> file path. The first entry is the reference for the line count.

    Returns:
        Column name -> list of lines, all of the same length.

    Raises:
        DataFormatError: Two files have different line counts (the message names both files).
    """
    out: dict[str, list[str]] = {}
    first_name = first_path = None
    for name, path in files.items():
        lines = read_lines(path, encoding=encoding)
        if first_path is None:
            first_name, first_path = name, Path(path)
        elif len(lines) != len(out[first_name]):
            raise DataFormatError(
                path,
                min(len(lines), len(out[first_name])) + 1,
                f"line count {len(lines)} differs from {first_path} ({len(out[first_name])} lines); "
                "the files must be line-aligned",
            )
        out[name] = lines
    return out


def read_jsonl(path: str | os.PathLike, encoding: str = "utf-8") -> list[dict[str, Any]]:
    """Parse a JSON-lines file strictly (see :func:`read_jsonl_numbered`), without line numbers."""
    return [obj for _, obj in read_jsonl_numbered(path, encoding=encoding)]


def read_jsonl_numbered(path: str | os.PathLike, encoding: str = "utf-8") -> list[tuple[int, dict[str, Any]]]:
    """Parse a JSON-lines file strictly: every non-blank line must be a JSON object.

    Blank lines (e.g. a trailing one) are skipped.

    Returns:
        ``(1-based line, object)`` pairs, so callers can report bad fields by line.

    Raises:
        DataFormatError: A line is not valid JSON or not an object (names file and line).
    """
    rows = []
    for lineno, line in enumerate(read_lines(path, encoding=encoding), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    return rows


def read_json_list(path: str | os.PathLike, encoding: str = "utf-8") -> list[Any]:
    """Read a file holding one JSON list (e.g. the PaLM ``llm/<split>_CoT_<i>.json`` files)."""
    path = require_file(Path(path))
    try:
        with open(path, encoding=encoding) as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, list):
        raise DataFormatError(path, 1, f"expected a JSON list, got {type(obj).__name__}")
    return obj


def read_delimited(
    path: str | os.PathLike,
    *,
    delimiter: str = ",",
    header: bool | Sequence[str] = True,
    quoting: int = csv.QUOTE_MINIMAL,
    encoding: str = "utf-8",
) -> list[dict[str, str]]:
    """Read a CSV/TSV file strictly (see :func:`read_delimited_numbered`), without line numbers."""
    rows = read_delimited_numbered(path, delimiter=delimiter, header=header, quoting=quoting, encoding=encoding)
    return [row for _, row in rows]


def read_delimited_numbered(
    path: str | os.PathLike,
    *,
    delimiter: str = ",",
    header: bool | Sequence[str] = True,
    quoting: int = csv.QUOTE_MINIMAL,
    encoding: str = "utf-8",
) -> list[tuple[int, dict[str, str]]]:
    """Read a CSV/TSV file strictly: every row must have as many fields as the header.

    Args:
        path: The file.
        delimiter: Field separator.
        header: ``True`` to take column names from the first line, or the column names themselves for a
            headerless file.
        quoting: A ``csv`` quoting constant; TSV corpora like SST-2 need ``csv.QUOTE_NONE`` because
            their sentences contain bare double quotes.

    Returns:
        ``(line, row)`` per data row: the 1-based line where the row starts (quoted fields may span lines)
        and a dict of its string values, so callers can report bad values by line.

    Raises:
        DataFormatError: A row has the wrong number of fields, or the CSV is malformed (file + line).
    """
    path = require_file(Path(path))
    rows: list[tuple[int, dict[str, str]]] = []
    with open(path, encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        names: list[str] | None = None if header is True else list(header)
        start_line = 1
        try:
            for fields in reader:
                lineno = start_line
                start_line = reader.line_num + 1  # a quoted field may span lines; report where the row starts
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if names is None:
                    names = [n.strip() for n in fields]
                    continue
                if len(fields) != len(names):
                    raise DataFormatError(
                        path, lineno, f"expected {len(names)} fields ({', '.join(names)}), got {len(fields)}"
                    )
                rows.append((lineno, dict(zip(names, fields))))
        except csv.Error as e:
            raise DataFormatError(path, reader.line_num, f"malformed CSV: {e}") from None
    return rows


def _infer_column(values: list[str]) -> list[Any]:
    """Turn a column of CSV strings into ints or floats when every value parses, else keep strings."""
    for cast in (int, float):
        try:
            return [cast(v) for v in values]
        except ValueError:
            continue
    return values


def _rows_to_dataset(rows: list[dict[str, Any]], path: Path) -> Dataset:
    from datasets import Dataset

    if not rows:
        raise DataFormatError(path, None, "no data rows")
    try:
        return Dataset.from_list(rows)
    except Exception as e:  # arrow type clashes between rows: say which file
        raise DataFormatError(path, None, f"rows do not share one schema: {e}") from e


def _is_saved_dataset_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def load_local(path_or_hub_id: str | os.PathLike, split: str | None = None) -> Dataset | DatasetDict:
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

    Returns:
        A ``Dataset`` (or a ``DatasetDict`` when ``split`` is ``None`` and the source has splits).

    Raises:
        DataFormatError: A malformed row (names file and line).
        ValueError: Unknown extension or unknown split.
    """
    import datasets

    path = Path(path_or_hub_id).expanduser()
    if path.is_dir() and _is_saved_dataset_dir(path):
        ds = datasets.load_from_disk(str(path))
        return _pick_split(ds, split, str(path))
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _rows_to_dataset(read_jsonl(path), path)
        if suffix == ".json":
            with open(path, encoding="utf-8") as f:
                head = f.read(4096).lstrip()
            if head.startswith("["):
                rows = read_json_list(path)
                for i, row in enumerate(rows):
                    if not isinstance(row, dict):
                        raise DataFormatError(path, None, f"list item {i} is a {type(row).__name__}, not an object")
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
            import pyarrow.parquet as pq

            return datasets.Dataset(pq.read_table(path))
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv, .tsv or .parquet)")
    if path.exists() or str(path_or_hub_id).startswith((".", "/", "~")):
        raise FileNotFoundError(f"{path}: not a data file or a save_to_disk folder")
    logger.info("Loading %s from the Hub (split=%s)", path_or_hub_id, split)
    return datasets.load_dataset(str(path_or_hub_id), split=split)


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    from datasets import DatasetDict

    if split is None or not isinstance(ds, DatasetDict):
        return ds
    if split not in ds:
        raise ValueError(f"{where}: no split {split!r} (available: {', '.join(ds)})")
    return ds[split]


def _resolve_size(size: int | float, n: int, name: str) -> int:
    if isinstance(size, bool) or size < 0:
        raise ValueError(f"{name} must be a non-negative int (rows) or a float fraction in [0, 1), got {size!r}")
    if isinstance(size, float):
        if size >= 1:
            raise ValueError(f"{name} as a fraction must be < 1, got {size}")
        return int(round(size * n))
    return int(size)


def deterministic_split(
    ds: Dataset,
    *,
    dev_size: int | float,
    test_size: int | float,
    seed: int = 42,
    group_column: str | None = None,
) -> DatasetDict:
    """Split one ``Dataset`` into train/dev/test, reproducibly and (optionally) group-aware.

    The units of the split are groups: each distinct value of ``group_column`` (or each row when no
    column is given). Units are listed in first-seen order and shuffled with ``random.Random(seed)``, so
    the result depends only on the data and the seed (not on ``PYTHONHASHSEED`` or the machine). Units are
    then dealt to ``test`` until it holds at least ``test_size`` rows, then to ``dev`` likewise, and the
    rest go to ``train``. Hence **rows sharing a group value never straddle two splits** (e.g. all
    references of one E2E meaning representation, or every paraphrase of one SLURP utterance, stay
    together), and with groups the dev/test sizes are reached or exceeded by at most one group. Within
    each split, rows keep their original order.

    Args:
        ds: The dataset to split.
        dev_size: Rows in dev: an int, or a float fraction of ``len(ds)``.
        test_size: Rows in test: an int, or a float fraction of ``len(ds)``.
        seed: Shuffle seed.
        group_column: Column whose equal values must stay in one split.

    Returns:
        ``DatasetDict`` with ``train``, ``dev`` and ``test``.

    Raises:
        ValueError: Bad sizes, sizes leaving no training rows, or an unknown column.
    """
    from datasets import DatasetDict

    n = len(ds)
    n_dev = _resolve_size(dev_size, n, "dev_size")
    n_test = _resolve_size(test_size, n, "test_size")
    if n_dev + n_test >= n:
        raise ValueError(f"dev_size + test_size = {n_dev + n_test} rows leaves no training rows out of {n}")
    if group_column is None:
        units: list[list[int]] = [[i] for i in range(n)]
    else:
        if group_column not in ds.column_names:
            raise ValueError(f"group_column {group_column!r} not in columns {ds.column_names}")
        by_group: dict[Any, list[int]] = {}
        for i, value in enumerate(ds[group_column]):
            key = json.dumps(value, sort_keys=True, default=str)  # lists/dicts become hashable, stably
            by_group.setdefault(key, []).append(i)
        units = list(by_group.values())
    random.Random(seed).shuffle(units)

    parts: dict[str, list[int]] = {"test": [], "dev": [], "train": []}
    targets = [("test", n_test), ("dev", n_dev)]
    it = iter(units)
    for name, target in targets:
        while len(parts[name]) < target:
            unit = next(it, None)
            if unit is None:
                raise ValueError(f"group-aware split ran out of groups filling {name!r} (groups too large)")
            parts[name].extend(unit)
    for unit in it:
        parts["train"].extend(unit)
    if not parts["train"]:
        raise ValueError(f"group-aware split left no training rows (groups in {group_column!r} are too large)")
    return DatasetDict({name: ds.select(sorted(parts[name])) for name in ("train", "dev", "test")})
