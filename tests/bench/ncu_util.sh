#!/bin/sh
# ncu_util.sh - how busy the SMs, the tensor pipes, DRAM and L2 are over one
# training step, by kernel class (round 25, issue 10): Nsight Compute
# measures every kernel of one K = 1 step of gpu_train's config (as
# ncu_step.sh, clocks left alone) with the unit metrics below, and
# ncu_util.py averages them per class weighted by time. The tensor-pipe
# metric is taken where this ncu knows it (its name differs between
# versions). Extra arguments are VAR=VALUE settings for that step;
# GPU_TRAIN_ONE_SEQS=32 in the environment lists a 65,536-token
# micro-batch. ncu replays each kernel once a metric pass with the caches
# flushed, so the times are isolated kernels', not the step's wall time.
# Output: the table on stdout; the raw CSV in $OUT (or ./out).
set -e
me=ncu_util.sh
. "$(dirname "$0")/ncu_setup.sh"
M="gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_elapsed.avg"
M="$M,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed"
"$NCU" --query-metrics >"$OUT/ncu_metrics.txt" 2>&1 || true
for t in sm__pipe_tensor_op_gmma_cycles_active sm__pipe_tensor_op_hmma_cycles_active; do
	if grep -q "^$t " "$OUT/ncu_metrics.txt"; then
		M="$M,$t.avg.pct_of_peak_sustained_elapsed"
	fi
done
echo "metrics: $M"
env "$@" "$NCU" --profile-from-start off --clock-control none --metrics "$M" --csv \
	"$BUILD/tests/bench/gpu_train" one >"$OUT/ncu_util.csv" 2>"$OUT/ncu_util.err"
python3 "$here/ncu_util.py" "$OUT/ncu_util.csv"
