#!/bin/sh
# gpu_lightning.sh - lightning attention, side by side in one run on one GPU:
# swerve's kernels (gpu_lightning.cu), PyTorch's blockwise form as MiniMax's
# model code (block 256) and cuDNN softmax attention (gpu_lightning.py).
# Prints one table, grouped by shape. Usage: BUILD=build sh tests/bench/gpu_lightning.sh
BUILD=${BUILD:-build}
bin="$BUILD/tests/bench/gpu_lightning"
[ -x "$bin" ] || make --no-print-directory "$bin" >/dev/null || exit 1
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$bin" >"$tmp/swerve" || { cat "$tmp/swerve"; exit 1; }
PYTHONUNBUFFERED=1 python3 "$(dirname "$0")/gpu_lightning.py" >"$tmp/torch" 2>"$tmp/torch.err" ||
	{ cat "$tmp/torch" "$tmp/torch.err"; exit 1; }
grep '^#' "$tmp/swerve" "$tmp/torch" | sed 's/^[^:]*://'
grep '^impl' "$tmp/swerve"
for shape in 8,2048,16,128 4,8192,16,128 1,32768,16,128 4,2048,12,64; do
	grep -h " $shape " "$tmp/swerve" "$tmp/torch"
done
