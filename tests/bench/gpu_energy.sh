#!/bin/sh
# gpu_energy.sh - round 27 (issue 10): where a training step's energy goes.
# `gpu_train energy` at 8192 and at 65,536 tokens a micro-batch (K = 1):
# every kernel of the step's CUDA graphs run alone, its time and joules
# from NVML's energy counter, by kernel and by class, against the whole
# step's joules (tests/bench/graph_energy.h). GPU_TRAIN_ENERGY_MS sets the
# window a kernel (default 100 ms; the counter moves every ~100 ms);
# GRAPH_ENERGY_VERBOSE=1 names each kernel on stderr as it runs.
BUILD=${BUILD:-build}
bin="$BUILD/tests/bench/gpu_train"
if ! nvidia-smi -L >/dev/null 2>&1; then
	echo "gpu_energy.sh: skipped: no NVIDIA GPU (nvidia-smi -L failed)"; exit 0
fi
[ -x "$bin" ] || { echo "gpu_energy.sh: $bin not built (make $bin)"; exit 1; }
for seqs in 4 32; do
	echo "== gpu_train energy, $seqs sequences of 2048 a micro-batch"
	GPU_TRAIN_ONE_SEQS=$seqs "$bin" energy || exit 1
done
