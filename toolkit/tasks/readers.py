"""Strict readers for the data files: lines, line-aligned corpora, JSON lines, JSON lists, CSV / TSV.

A malformed input always fails with a :class:`DataFormatError` naming the file and the 1-based line, and
line-aligned corpora (sources / references / system outputs) can never silently drift out of alignment.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DataFormatError",
    "read_aligned",
    "read_delimited",
    "read_delimited_numbered",
    "read_json_list",
    "read_jsonl",
    "read_jsonl_numbered",
    "read_lines",
    "require_file",
]


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
    with open(path, encoding=encoding, newline="") as handle:
        text = handle.read()
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
        with open(path, encoding=encoding) as handle:
            obj = json.load(handle)
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
    with open(path, encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
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
