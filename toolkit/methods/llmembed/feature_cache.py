"""LLMEmbed's feature cache: each backbone's features extracted once, on disk, shared by every variant and rerun.

Features are cached as safetensors keyed by model, layers, pooling, max length and a hash of the texts; a cache
hit never loads the model, and still reports the cost of the extraction that built the entry.

Under a multi-process launch the extraction is sharded: it is a frozen forward pass, so every rank extracts an
equal share of the texts on its own device and the shares are gathered back in order
(:func:`toolkit.distributed.map_sharded`). The main process decides what the cache holds (its answer is broadcast, so
no rank can skip a pass the others make) and alone writes new entries; the cache folder must be one every node
reads, as the Hugging Face cache usually is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from toolkit.distributed import is_main_process, map_sharded
from toolkit.meter import Cost
from toolkit.methods.llmembed.embeddings import ExtractionSpec, cost_over_ranks, extract_embeddings, load_backbone
from toolkit.models.loading import resolve_model

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = "2"  # 2: RoBERTa-family features keep their own positions


def texts_fingerprint(texts: Sequence[str]) -> str:
    """sha256 over the texts (length-prefixed, so ``["ab", "c"]`` and ``["a", "bc"]`` differ)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def model_fingerprint(name: str) -> str:
    """The model reference plus, for a local checkpoint, a hash of its config and weight file sizes/mtimes.

    So a checkpoint re-saved at the same path (e.g. a re-built tiny test model) does not hit a stale cache.
    """
    path = Path(resolve_model(name))
    digest = hashlib.sha256(str(name).encode())
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.suffix in (".json", ".safetensors", ".bin"):
                stat = file.stat()
                digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def cache_key(spec: ExtractionSpec, texts_fp: str) -> str:
    """Content key of one extraction: model, layers, pooling, max length, texts (batch size does not matter)."""
    payload = {
        "v": CACHE_FORMAT_VERSION,
        "model": model_fingerprint(spec.model),
        "layers": list(spec.layers),
        "pooling": spec.pooling,
        "max_length": spec.max_length,
        "texts": texts_fp,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def get_or_extract(
    spec: ExtractionSpec,
    texts: Sequence[str],
    cache_dir: str | os.PathLike | None,
    *,
    device: str | None = None,
    backbone: tuple | None = None,
    show_progress: bool = True,
):
    """Features for ``texts`` from the disk cache, or extract (loading the model only then) and cache them.

    Args:
        spec: What to extract.
        texts: Input texts.
        cache_dir: Cache folder (``None`` disables caching).
        device: Torch device for extraction.
        backbone: An already loaded ``(model, tokenizer)``, or a zero-argument callable returning one (called
            only on a cache miss, so a fully cached run never loads the model); default :func:`load_backbone`.
        show_progress: tqdm bar during extraction.

    Returns:
        ``(features [N, len(layers), H], info)`` where ``info`` has ``cache_hit``, ``path``, ``n_texts``,
        ``n_tokens`` and the cost of the extraction that built the entry (``extract_wall_s``,
        ``extract_cpu_s``, ``load_wall_s``): on a hit these are the *original* costs, so reports can still
        charge a method for its features.
    """
    return get_or_extract_many(
        [spec], texts, cache_dir, device=device, backbone=backbone, show_progress=show_progress
    )[0]


def get_or_extract_many(
    specs: Sequence[ExtractionSpec],
    texts: Sequence[str],
    cache_dir: str | os.PathLike | None,
    *,
    device: str | None = None,
    backbone: tuple | None = None,
    show_progress: bool = True,
) -> list[tuple]:
    """:func:`get_or_extract` for specs that differ only in pooling: the cache misses share one extraction pass.

    Each entry is cached under its own spec and charged the whole pass (what it would cost alone). Every rank of a
    multi-process run must call it with the same arguments: the misses are extracted in shards across the ranks.
    """
    if len({(s.model, tuple(s.layers), s.max_length, s.batch_size) for s in specs}) != 1:
        raise ValueError("get_or_extract_many: the specs may differ only in pooling")
    paths = [cache_path(cache_dir, spec, texts) if cache_dir is not None else None for spec in specs]
    cached = _cached_on_main(paths)
    results = {i: _read_cache_entry(paths[i]) for i in range(len(specs)) if cached[i]}
    missing = [i for i in range(len(specs)) if not cached[i]]
    if not missing:
        return [results[i] for i in range(len(specs))]
    poolings = [specs[i].pooling for i in missing]
    feats, cost = _extract_sharded(specs[missing[0]], poolings, texts, device, backbone, show_progress)
    for index in missing:
        spec, path = specs[index], paths[index]
        info = {"spec": asdict(spec), **cost}
        if path is not None and is_main_process():
            _write_cache_entry(path, feats[spec.pooling], info)
        results[index] = (feats[spec.pooling], {**info, "cache_hit": False, "path": str(path) if path else None})
    return [results[i] for i in range(len(specs))]


def cache_path(cache_dir: str | os.PathLike, spec: ExtractionSpec, texts: Sequence[str]) -> Path:
    """Where the features of ``spec`` on ``texts`` are cached."""
    key = cache_key(spec, texts_fingerprint(texts))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(spec.model))[-40:]
    return Path(cache_dir) / f"{slug}-{key}.safetensors"


def _cached_on_main(paths: Sequence[Path | None]) -> list[bool]:
    """Which entries the cache holds, as the main process sees it (broadcast: every rank extracts the same misses)."""
    hits = [path is not None and path.exists() for path in paths]
    return broadcast_object_list([hits])[0]


def _read_cache_entry(path: Path) -> tuple:
    if not path.exists():
        raise FileNotFoundError(
            f"embedding cache entry {path} exists on the main process only: use a shared cache_dir"
        )
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["info"])
    logger.info("Embedding cache hit: %s (%d texts)", path.name, meta.get("n_texts", -1))
    return load_file(str(path))["features"], {**meta, "cache_hit": True, "path": str(path)}


def _write_cache_entry(path: Path, features, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    save_file({"features": features.contiguous()}, str(tmp), metadata={"info": json.dumps(info)})
    os.replace(tmp, path)  # atomic: a killed run never leaves a truncated entry under the real name


def _extract_sharded(spec: ExtractionSpec, poolings, texts, device, backbone, show_progress) -> tuple[dict, dict]:
    """Features of ``texts`` under each of ``poolings``, every rank extracting its share; with the pass's cost.

    Returns:
        ``({pooling: [N, len(layers), H]}, cost)``: ``cost`` has ``n_texts``, ``n_tokens`` and the load / extraction
        wall and CPU seconds, summed over the ranks (:func:`cost_over_ranks`).
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if backbone is None:
        backbone = load_backbone(spec.model, device=device)
    elif callable(backbone):
        backbone = backbone()
    model, tokenizer = backbone
    load = cost_over_ranks(time.perf_counter() - start_wall, time.process_time() - start_cpu)
    extract_wall, extract_cpu = time.perf_counter(), time.process_time()

    def extract_share(rows: list[str]) -> list[tuple[dict, int]]:
        feats, _ = extract_embeddings(
            model,
            tokenizer,
            rows,
            layers=spec.layers,
            pooling=list(poolings),
            max_length=spec.max_length,
            batch_size=spec.batch_size,
            show_progress=show_progress,
        )
        lengths = [len(ids) for ids in tokenizer(rows, truncation=True, max_length=spec.max_length)["input_ids"]]
        # clone(): a pickled view would carry the whole batch's storage through the gather
        return [({p: feats[p][row].clone() for p in poolings}, lengths[row]) for row in range(len(rows))]

    per_row = map_sharded(extract_share, list(texts))
    extract = cost_over_ranks(time.perf_counter() - extract_wall, time.process_time() - extract_cpu)
    feats = {p: _stack([row[0][p] for row in per_row], len(spec.layers)) for p in poolings}
    cost = {
        "n_texts": len(texts),
        "n_tokens": sum(row[1] for row in per_row),
        "load_wall_s": load.wall_s,
        "load_cpu_s": load.cpu_s,
        "extract_wall_s": extract.wall_s,
        "extract_cpu_s": extract.cpu_s,
    }
    logger.info(
        "Extracted %s layers %s for %d texts (%d tokens) in %.1f s",
        spec.model,
        spec.layers,
        len(texts),
        cost["n_tokens"],
        cost["extract_wall_s"],
    )
    return feats, cost


def _stack(rows: list, n_layers: int):
    if rows:
        return torch.stack(rows)
    return torch.empty(0, n_layers, 0)  # no texts: nothing was extracted


def extract_sources(
    specs: Mapping[str, ExtractionSpec],
    splits: Sequence[Sequence[str]],
    cache_dir: str | os.PathLike | None,
    *,
    device: str | None = None,
) -> tuple[dict[str, list], dict[str, list[dict]]]:
    """Features of every named spec on every split of texts, through the cache, sharded across the ranks.

    Specs that differ only in pooling (e.g. the mean- and last-token-pooled views of one LLM) share one backbone
    load, made only on a cache miss, and one set of forward passes. Every rank must call it.

    Args:
        specs: ``{source name: what to extract}`` (see :func:`extraction_specs`).
        splits: Lists of texts (e.g. train, validation, test).
        cache_dir: Cache folder (``None`` disables caching).
        device: This rank's torch device (default :func:`toolkit.models.loading.default_device`).

    Returns:
        ``({name: [features per split]}, {name: [info per split]})`` (see :func:`get_or_extract`), on every rank.
    """
    groups: dict[tuple, list[str]] = {}
    for name, spec in specs.items():
        groups.setdefault((spec.model, tuple(spec.layers), spec.max_length, spec.batch_size), []).append(name)
    feats, infos = {}, {}
    for names in groups.values():
        backbone = _lazy_backbone(specs[names[0]].model, device)
        group_specs = [specs[name] for name in names]
        parts = [get_or_extract_many(group_specs, texts, cache_dir, backbone=backbone) for texts in splits]
        for position, name in enumerate(names):
            feats[name] = [part[position][0] for part in parts]
            infos[name] = [part[position][1] for part in parts]
    return feats, infos


def _lazy_backbone(model: str, device: str | None):
    """A zero-argument loader that loads ``model`` on its first call only (never, when every split is cached)."""
    loaded: dict[str, tuple] = {}

    def backbone() -> tuple:
        if "backbone" not in loaded:
            loaded["backbone"] = load_backbone(model, device=device, padding_side="right")
        return loaded["backbone"]

    return backbone


def extraction_cost(infos: Sequence[Mapping]) -> dict:
    """``{"train": Cost, "test": Cost, "cached": bool}`` of one source's (train, validation, test) extractions.

    Training a head needs the train and validation features, predicting needs the test features; a cached entry
    is charged the extraction that built it.
    """
    costs = [Cost(info["extract_wall_s"], info["extract_cpu_s"]) for info in infos]
    return {"train": costs[0] + costs[1], "test": costs[2], "cached": all(info["cache_hit"] for info in infos)}
