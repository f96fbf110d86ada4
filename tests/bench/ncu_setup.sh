# ncu_setup.sh - sourced by ncu_step.sh and ncu_util.sh (with $me, the
# calling script's name, set): BUILD and OUT (made), here (the scripts'
# folder), NCU (Nsight Compute's binary); exits 0 with a "skipped" line
# where there is no CUDA device or no ncu; builds gpu_train if missing.
BUILD=${BUILD:-build}
OUT=${OUT:-out}
here=$(dirname "$0")
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
	echo "$me: skipped: no CUDA device"
	exit 0
fi
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
if [ -z "$NCU" ]; then
	echo "$me: skipped: ncu (Nsight Compute) not found"
	exit 0
fi
mkdir -p "$OUT"
[ -x "$BUILD/tests/bench/gpu_train" ] || make --no-print-directory "$BUILD/tests/bench/gpu_train"
