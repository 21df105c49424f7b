"""A trained student as others load it: a base that resolves anywhere, merged weights, card sections.

:func:`export_student` writes the base (:mod:`toolkit.publishing.base_model`) into ``adapter_config.json`` and,
with ``merge=True``, folds the adapter into the base weights (``merged/``: safetensors + tokenizer) so the pushed
model loads with no base at all.
:func:`usage_snippet` is the code the card shows; tests execute it against a fake Hub.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from toolkit.models.loading import resolve_model
from toolkit.publishing.base_model import BaseModelRef, describe_base, name_for_card
from toolkit.publishing.cards import citation_block, rows_table
from toolkit.publishing.lineage import Lineage, hub_commit, is_hub_id

logger = logging.getLogger(__name__)

__all__ = ["StudentExport", "export_student", "publish_student", "replace_card", "usage_snippet"]

ADAPTER_CONFIG = "adapter_config.json"
MERGED_SUBDIR = "merged"


@dataclass(frozen=True)
class StudentExport:
    """What :func:`export_student` wrote.

    Attributes:
        folder: The folder to push: the run folder (adapter or full model) or its ``merged/`` copy.
        base: The base the student names.
        adapter: Whether ``folder`` holds a PEFT adapter (else full weights).
        seq2seq: Whether the student is an encoder-decoder.
    """

    folder: Path
    base: BaseModelRef
    adapter: bool
    seq2seq: bool

    @property
    def library_name(self) -> str:
        """The card's ``library_name``: ``peft`` for an adapter, ``transformers`` for full weights."""
        return "peft" if self.adapter else "transformers"

    def card_sections(self, repo_id: str) -> dict[str, str]:
        """``{heading: markdown}`` for the model card: a usage snippet that loads ``repo_id``."""
        usage = usage_snippet(repo_id, adapter=self.adapter, seq2seq=self.seq2seq)
        return {"Usage": f"```python\n{usage}```"}


def export_student(
    out_dir: str | os.PathLike,
    *,
    base: BaseModelRef,
    base_path: str | os.PathLike | None = None,
    merge: bool = False,
) -> StudentExport:
    """Make a saved student loadable elsewhere; optionally fold its adapter into full weights.

    Args:
        out_dir: Where ``trainer.save_model`` and ``tokenizer.save_pretrained`` wrote the student.
        base: The base to name (:func:`describe_base`).
        base_path: A local copy of the base weights (``toolkit.models.loading.resolve_model``), needed with
            ``merge=True`` for an adapter.
        merge: Write ``out_dir/merged/``: the adapter merged into the base, as safetensors with the tokenizer.

    Returns:
        What was written and which folder to push.

    Raises:
        FileNotFoundError: ``out_dir`` holds neither an adapter nor a model config.
        ValueError: ``merge`` for an adapter without ``base_path``.
    """
    out = Path(out_dir)
    adapter_file = out / ADAPTER_CONFIG
    if adapter_file.is_file():
        seq2seq = _rewrite_adapter_base(adapter_file, base)
        if not merge:
            return StudentExport(out, base, adapter=True, seq2seq=seq2seq)
        if base_path is None:
            raise ValueError("merging an adapter needs base_path: the local copy of the base weights")
        merged = _merge_adapter(out, Path(base_path), seq2seq=seq2seq)
        return StudentExport(merged, base, adapter=False, seq2seq=seq2seq)
    if not (out / "config.json").is_file():
        raise FileNotFoundError(f"{out}: no {ADAPTER_CONFIG} or config.json (was the student saved there?)")
    _drop_local_names(out / "config.json")
    config = AutoConfig.from_pretrained(out)
    return StudentExport(out, base, adapter=False, seq2seq=bool(getattr(config, "is_encoder_decoder", False)))


def _rewrite_adapter_base(adapter_file: Path, base: BaseModelRef) -> bool:
    """Point ``adapter_config.json`` at ``base``; returns whether the adapter is for a seq2seq model."""
    config = json.loads(adapter_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base.hub_id or base.loaded_from
    config["revision"] = base.revision
    adapter_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info(
        "%s names its base as %s (revision %s)", adapter_file, config["base_model_name_or_path"], base.revision
    )
    return config.get("task_type") == "SEQ_2_SEQ_LM"


def _merge_adapter(adapter_dir: Path, base_path: Path, *, seq2seq: bool) -> Path:
    """Load the base in fp32, apply the saved adapter, merge, save safetensors + tokenizer under ``merged/``."""
    model_cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    model = model_cls.from_pretrained(base_path, dtype="float32")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    target = adapter_dir / MERGED_SUBDIR
    merged.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(target)
    _drop_local_names(target / "config.json")
    logger.info("Merged the adapter of %s into %s", adapter_dir, target)
    return target


def _drop_local_names(config_file: Path) -> None:
    """Remove a ``_name_or_path`` that is a path of this machine from a saved ``config.json``."""
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if os.path.isabs(str(config.get("_name_or_path", ""))):
        config["_name_or_path"] = name_for_card(config["_name_or_path"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def usage_snippet(repo_id: str, *, adapter: bool, seq2seq: bool, prompt: str = "Hello") -> str:
    """Python that loads ``repo_id`` from the Hub and generates from ``prompt`` (the card's usage section)."""
    family = "Seq2SeqLM" if seq2seq else "CausalLM"
    if adapter:
        loader = f"from peft import AutoPeftModelFor{family}\n"
        model_line = f'model = AutoPeftModelFor{family}.from_pretrained("{repo_id}")\n'
    else:
        loader = f"from transformers import AutoModelFor{family}\n"
        model_line = f'model = AutoModelFor{family}.from_pretrained("{repo_id}")\n'
    return (
        f"{loader}from transformers import AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
        f"{model_line}"
        f'inputs = tokenizer({prompt!r}, return_tensors="pt")\n'
        "output = model.generate(**inputs, max_new_tokens=32, do_sample=False)\n"
        "print(tokenizer.decode(output[0], skip_special_tokens=True))\n"
    )


def replace_card(
    card,
    export: StudentExport,
    repo_id: str,
    *,
    dataset_revision: str | None = None,
    data_rows: Mapping[str, int] | None = None,
    citation: str | None = None,
):
    """A copy of a :class:`toolkit.run.Card` describing ``export``: base, library, usage, rows, citation, lineage.

    The card's lineage (when it has one) records the base's revision and the commit of the generated dataset it
    names when that is a Hub dataset (``dataset_revision`` is what the run asked for; the sha it resolves to now
    is recorded when the Hub answers).
    """
    lineage = card.lineage
    if isinstance(lineage, Lineage):
        dataset = lineage.generated_dataset
        revision = lineage.dataset_revision or dataset_revision
        if dataset and is_hub_id(dataset):
            revision = hub_commit(dataset, repo_type="dataset", revision=revision) or revision
        base = export.base
        lineage = dataclasses.replace(
            lineage,
            base_model=base.loaded_from if base.is_gguf_derived else (base.hub_id or base.loaded_from),
            base_model_revision=base.revision,
            dataset_revision=revision,
        )
    sections = {**card.extra_sections, **export.card_sections(repo_id)}
    if data_rows:
        sections["Training and evaluation rows"] = rows_table(data_rows)
    if citation:
        sections["Citation"] = citation_block(citation)
    return dataclasses.replace(
        card, base_model=export.base, library_name=export.library_name, lineage=lineage, extra_sections=sections
    )


def publish_student(
    out_dir: str | os.PathLike,
    card,
    repo_id: str,
    *,
    model_name_or_path: str,
    base_model_id: str | None = None,
    revision: str | None = None,
    commit_hash: str | None = None,
    merge: bool = False,
    dataset_revision: str | None = None,
    data_rows: Mapping[str, int] | None = None,
    citation: str | None = None,
):
    """The end of a recipe's Finish section: make the saved student portable, then describe it in its card.

    Args:
        out_dir: Where the student was saved.
        card: The recipe's :class:`toolkit.run.Card`.
        repo_id: Where it will be pushed (the usage snippet loads it from there).
        model_name_or_path: What the run loaded the student from.
        base_model_id: ``--base_model_id``.
        revision: ``--model_revision``.
        commit_hash: The commit the base weights came from (``model.config._commit_hash``), if any.
        merge: ``--push_merged``: push merged full weights instead of the adapter.
        dataset_revision: ``--dataset_revision`` of the generated dataset the lineage names.
        data_rows: ``{split: rows}`` the student trained, was selected and was tested on.
        citation: The method paper's BibTeX entry.

    Returns:
        ``(card, folder)``: the card to render and the folder to push.
    """
    base = describe_base(model_name_or_path, base_model_id=base_model_id, revision=revision, commit_hash=commit_hash)
    base_path = resolve_model(model_name_or_path) if merge else None
    export = export_student(out_dir, base=base, base_path=base_path, merge=merge)
    card = replace_card(
        card, export, repo_id, dataset_revision=dataset_revision, data_rows=data_rows, citation=citation
    )
    return card, export.folder
