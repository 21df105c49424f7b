"""Publishing to the Hugging Face Hub (create repo + one commit): a run folder as it is (:func:`push_to_hub`), or
files mapped to their place in the repo (:func:`push_files`, e.g. a generation job's extras under ``extras/``).

Trainer checkpoints and optimizer / scheduler / RNG states are left out by default
(:data:`DEFAULT_IGNORE_PATTERNS`). The cards that go with an upload are rendered by :mod:`toolkit.publishing.cards`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, ModelCard, get_token

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_IGNORE_PATTERNS", "push_files", "push_to_hub"]


# Left out of uploads unless the caller passes its own ``ignore_patterns``: Trainer checkpoints, then optimizer /
# scheduler / grad-scaler / RNG states (large, useless for inference). Matched with fnmatch against paths relative
# to the folder, where ``*`` also matches ``/``, so "checkpoint-*" drops whole checkpoint-500/ dirs.
DEFAULT_IGNORE_PATTERNS: tuple[str, ...] = ("checkpoint-*", "*/checkpoint-*", "*optimizer.pt", "*optimizer.bin")
DEFAULT_IGNORE_PATTERNS += ("*scheduler.pt", "*scaler.pt", "*rng_state*.pth", "*.lock", "*.tmp")


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
    ignore_patterns: Iterable[str] | None = DEFAULT_IGNORE_PATTERNS,
    allow_patterns: Iterable[str] | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it in one commit.

    Args:
        folder: Local run / export folder.
        repo_id: ``namespace/name`` (a bare name goes to the token owner's namespace).
        repo_type: ``"model"`` or ``"dataset"``.
        token: Hub token; defaults to ``HF_TOKEN`` or the stored ``hf auth login`` token. Never logged.
        private: Create the repo as private (an existing repo's visibility is left unchanged).
        commit_message: Commit title; a default naming the folder is used otherwise.
        revision: Branch to commit to (created from ``main`` if missing).
        ignore_patterns: fnmatch patterns (relative paths) to leave out; defaults to
            :data:`DEFAULT_IGNORE_PATTERNS` (Trainer checkpoints, optimizer / scheduler / RNG states). Pass
            ``()`` to upload everything.
        allow_patterns: If given, only matching paths are uploaded.

    Returns:
        The URL of the created commit.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        RuntimeError: no token was passed or found.
        ValueError: ``folder/README.md`` has invalid card metadata.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"push_to_hub: {folder} is not a directory")
    _check_card(folder / "README.md", repo_type, token)
    api, repo_id = _open_repo(repo_id, repo_type=repo_type, token=token, private=private, revision=revision)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with distill-toolkit",
        # upload_folder appends its defaults to this list in place: always hand it a fresh copy.
        ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
        allow_patterns=list(allow_patterns) if allow_patterns else None,
    )
    logger.info("Pushed %s to %s %s: %s", folder, repo_type, repo_id, info.commit_url)
    return str(info.commit_url)


def push_files(
    files: dict[str, Path],
    repo_id: str,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``{path in repo: local file}`` in one commit.

    For folders whose layout on the Hub differs from the local one (a generation job: its extras under
    ``extras/``). Checks as :func:`push_to_hub` does; returns the commit URL.
    """
    if "README.md" in files:
        _check_card(Path(files["README.md"]), repo_type, token)
    else:
        _check_card(None, repo_type, token)
    api, repo_id = _open_repo(repo_id, repo_type=repo_type, token=token, private=private)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
    info = api.create_commit(
        repo_id=repo_id,
        repo_type=repo_type,
        operations=operations,
        commit_message=commit_message or "Upload with distill-toolkit",
    )
    logger.info("Pushed %d files to %s %s: %s", len(files), repo_type, repo_id, info.commit_url)
    return str(info.commit_url)


def _check_card(readme: Path | None, repo_type: str, token: str | None) -> None:
    """Fail before creating anything remote: no token, or card metadata that does not parse."""
    if token is None and get_token() is None:
        raise RuntimeError("No Hugging Face token: pass token=..., set HF_TOKEN, or run `hf auth login`.")
    if readme is None or not readme.is_file():
        return
    card_cls = DatasetCard if repo_type == "dataset" else ModelCard
    try:
        card_cls(readme.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as err:
        raise ValueError(f"Invalid card metadata in {readme}: {err}") from err


def _open_repo(
    repo_id: str, *, repo_type: str, token: str | None, private: bool, revision: str | None = None
) -> tuple[HfApi, str]:
    """The API client and the full repo id, the repo (and branch ``revision``) created if missing."""
    # Built per call (not at import) so HF_ENDPOINT / constants patched after import are honoured.
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True).repo_id
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    return api, repo_id
