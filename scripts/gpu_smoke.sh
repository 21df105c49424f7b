#!/usr/bin/env bash
# Every recipe for a few steps under every GPU accelerate config, then a reload of what each run saved.
#
#   scripts/gpu_smoke.sh [OUT_DIR]                      # default OUT_DIR: runs/gpu_smoke
#   NPROC=2 CONFIGS="ddp fsdp" RECIPES="lmcor llmembed" scripts/gpu_smoke.sh
#
# Needs CUDA GPUs (NPROC, default: every visible one), `make install`, the data root (TOOLKIT_DATA_DIR) for the
# step_by_step / qlora_multitask / llmembed configs, and `pip install deepspeed` for zero3.yaml.
#
# Why each config runs here and not in the CPU test suite:
#   ddp.yaml:        NCCL and bf16 autocast need GPUs; the same data-parallel code runs on CPU (gloo) in the
#                    2-process recipe tests (tests/recipes/), which launch with --multi_gpu and ACCELERATE_USE_CPU.
#   fsdp.yaml:       on CPU, `accelerate launch` with an FSDP config silently runs DDP; FSDP2's own paths (sharded
#                    training, sharded generation, gathered save, reload) run on CPU in tests/distributed/test_fsdp_cpu.py,
#                    the Trainer's FSDP integration (auto wrap, FULL_STATE_DICT save) only here.
#   zero3.yaml:      DeepSpeed ZeRO-3 partitioning and its 16-bit gathered save need CUDA (and deepspeed).
#   fsdp_qlora.yaml: bitsandbytes 4-bit layers (bnb_4bit_quant_storage) need CUDA; qlora_multitask only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/runs/gpu_smoke}"
NPROC="${NPROC:-$(python -c 'import torch; print(torch.cuda.device_count())')}"
CONFIGS="${CONFIGS:-ddp fsdp zero3 fsdp_qlora}"
RECIPES="${RECIPES:-lmcor step_by_step qlora_multitask llmembed}"
STEPS="${STEPS:-3}"
cd "$ROOT"
mkdir -p "$OUT"
if [ "$NPROC" -lt 1 ]; then
  echo "gpu_smoke: no CUDA GPU visible" >&2
  exit 1
fi

# A few steps of one recipe, small samples, nothing pushed.
recipe_args() {
  local recipe="$1" config="$2"
  case "$recipe" in
    lmcor)
      echo "--max_steps $STEPS --save_strategy no --report_to none" ;;
    step_by_step)
      echo "--config recipes/configs/step_by_step/svamp.yaml --max_steps $STEPS --max_train_samples 32" \
           "--max_eval_samples 8 --max_test_samples 8 --eval_strategy no --save_strategy no --report_to none" ;;
    qlora_multitask)
      # 4-bit under DDP (k-bit device map) and fsdp_qlora; fsdp.yaml and zero3.yaml shard a bf16 base + LoRA.
      local quantization=true
      if [ "$config" = fsdp ] || [ "$config" = zero3 ]; then quantization=false; fi
      echo "--config recipes/configs/qlora_multitask/smollm2_cpu.yaml --max_steps $STEPS --save_strategy no" \
           "--report_to none --quantization $quantization" ;;
    llmembed)
      echo "--config recipes/configs/llmembed/sst2.yaml --max_train_samples 64 --val_size 16 --max_test_samples 32" \
           "--few_shot_max_test 8 --encoder_epochs 1 --encoder_batch_size $((4 * NPROC)) --epochs 5" ;;
  esac
}

failed=()
for recipe in $RECIPES; do
  for config in $CONFIGS; do
    if [ "$config" = fsdp_qlora ] && [ "$recipe" != qlora_multitask ]; then continue; fi
    run_dir="$OUT/$recipe-$config"
    echo "=== $recipe under recipes/accelerate_configs/$config.yaml ($NPROC processes) -> $run_dir"
    # shellcheck disable=SC2046  # recipe_args is a list of flags
    if accelerate launch --config_file "recipes/accelerate_configs/$config.yaml" --num_processes "$NPROC" \
        "recipes/$recipe.py" $(recipe_args "$recipe" "$config") --output_dir "$run_dir" \
        >"$run_dir.log" 2>&1 && python scripts/check_reload.py "$run_dir"; then
      echo "ok $recipe $config"
    else
      echo "FAILED $recipe $config (log: $run_dir.log)"
      failed+=("$recipe/$config")
    fi
  done
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_smoke: failed ${failed[*]}" >&2
  exit 1
fi
echo "gpu_smoke: every recipe trained and reloaded under: $CONFIGS"
