#!/bin/sh
# ncu_step.sh - where one training step's GPU time goes, kernel by kernel:
# Nsight Compute times every kernel of one K = 1 step of gpu_train's config
# and its AdamW (gpu_train 'one' brackets them with cudaProfilerStart/Stop;
# clocks left alone, METHOD.md), and ncu_step.py groups them by name. Extra
# arguments are VAR=VALUE settings for that step (e.g. POLICY_GPU_EW=old).
# Run by hand on the GPU machine (not part of bench-gpu: ~40 s); ncu
# serialises the kernels and flushes the caches between them, so the sum of
# the durations is not the step's wall time, which gpu_train prints first.
# GPU_TRAIN_ONE_SEQS=32 in the environment lists a 65,536-token micro-batch.
# Output: the table on stdout; the raw CSV and the launch order in $OUT (or
# ./out). Needs ncu (CUDA's Nsight Compute) and a CUDA device.
set -e
me=ncu_step.sh
. "$(dirname "$0")/ncu_setup.sh"
env "$@" "$BUILD/tests/bench/gpu_train" one 2>/dev/null | tail -n 1
env "$@" "$NCU" --profile-from-start off --clock-control none \
	--metrics gpu__time_duration.sum --csv "$BUILD/tests/bench/gpu_train" one \
	>"$OUT/ncu_step.csv" 2>"$OUT/ncu_step.err"
python3 "$here/ncu_step.py" "$OUT/ncu_step.csv" "$OUT/ncu_step_order.tsv"
