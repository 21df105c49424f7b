"""Machine translation: the WMT22 General MT test set with every system's output.

Pairs: en-de (9 systems) and, into English, de-en (9), zh-en (12) and cs-en (11). The system outputs make a
real candidate pool for LMCor (a corrector that reads several candidate translations); ``candidates`` and ``systems`` are listed in one fixed order (systems sorted by name,
case-sensitively) so that candidate ``k`` always comes from the same system.
"""

from __future__ import annotations

import os

from datasets import Dataset, Features, List, Value

from toolkit.tasks.base import data_root
from toolkit.tasks.readers import read_aligned

WMT22_PAIRS = ("en-de", "de-en", "zh-en", "cs-en")
_PREFIX = "generaltest2022"


def wmt22_systems(pair: str = "en-de", data_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the systems with outputs for ``pair``, sorted: the order of ``candidates``."""
    tgt_lang = pair.split("-")[1]
    folder = data_root(data_dir) / "wmt22_general" / "system-outputs"
    prefix, suffix = f"{_PREFIX}.{pair}.hyp.", f".{tgt_lang}"
    if not folder.is_dir():
        return []
    return sorted(p.name[len(prefix) : -len(suffix)] for p in folder.glob(f"{prefix}*{suffix}") if p.is_file())


def wmt22_references(pair: str = "en-de", data_dir: str | os.PathLike | None = None) -> list[str]:
    """Reference ids for ``pair``, sorted (``["A", "B"]``; cs-en has ``["B", "C"]``)."""
    tgt_lang = pair.split("-")[1]
    folder = data_root(data_dir) / "wmt22_general" / "references"
    prefix, suffix = f"{_PREFIX}.{pair}.ref.", f".{tgt_lang}"
    return sorted(p.name[len(prefix) : -len(suffix)] for p in folder.glob(f"{prefix}*{suffix}") if p.is_file())


def load_wmt22(pair: str = "en-de", data_dir: str | os.PathLike | None = None, strip: bool = True) -> Dataset:
    """Load a WMT22 General test pair as ``id, source, references, candidates, systems``.

    Args:
        pair: ``"en-de"`` (2,037 segments, refs A/B, 9 systems), ``"de-en"`` (1,984, refs A/B, 9 systems),
            ``"zh-en"`` (1,875, refs A/B, 12 systems) or ``"cs-en"`` (1,448, refs B/C, 11 systems). A pair whose
            system outputs are absent loads with empty ``candidates`` / ``systems``.
        data_dir: Data root override.
        strip: Strip surrounding whitespace from every segment (the files are detokenized text; a stray
            trailing space would otherwise count in BLEU/chrF).

    Returns:
        ``Dataset``; ``references`` lists every reference in id order; ``candidates[k]`` is the output of ``systems[k]``.

    Raises:
        ValueError: Unknown pair.
        DataFormatError: Some file is not line-aligned with the source (names both files).
    """
    if pair not in WMT22_PAIRS:
        raise ValueError(f"WMT22 pair {pair!r} not available (have: {', '.join(WMT22_PAIRS)})")
    src_lang, tgt_lang = pair.split("-")
    root = data_root(data_dir) / "wmt22_general"
    files = {"source": root / "sources" / f"{_PREFIX}.{pair}.src.{src_lang}"}
    refs = wmt22_references(pair, data_dir)
    if not refs:
        raise FileNotFoundError(f"no WMT22 {pair} references under {root / 'references'}")
    for ref in refs:
        files[f"ref{ref}"] = root / "references" / f"{_PREFIX}.{pair}.ref.{ref}.{tgt_lang}"
    systems = wmt22_systems(pair, data_dir)
    for system in systems:
        files[f"sys:{system}"] = root / "system-outputs" / f"{_PREFIX}.{pair}.hyp.{system}.{tgt_lang}"
    cols = read_aligned(files)
    norm = (lambda s: s.strip()) if strip else (lambda s: s)
    num_rows = len(cols["source"])
    return Dataset.from_dict(
        {
            "id": [f"wmt22-{pair}-{i}" for i in range(num_rows)],
            "source": [norm(s) for s in cols["source"]],
            "references": [[norm(cols[f"ref{r}"][i]) for r in refs] for i in range(num_rows)],
            "candidates": [[norm(cols[f"sys:{s}"][i]) for s in systems] for i in range(num_rows)],
            "systems": [list(systems) for _ in range(num_rows)],
        },
        # explicit features: a pair may have no systems, and empty lists would otherwise get a null type
        features=Features(
            {
                "id": Value("string"),
                "source": Value("string"),
                "references": List(Value("string")),
                "candidates": List(Value("string")),
                "systems": List(Value("string")),
            }
        ),
    )
