#!/bin/sh
# gpu_policy_loss.sh - issue 9's benchmark: the fused policy loss
# (build/tests/bench/gpu_policy_loss) beside the straightforward PyTorch
# version (tests/bench/gpu_policy_loss.py), same sizes, one run, one table.
# "vs pt-off" = PyTorch TF32-off time / this time (at the same V); "mem" =
# this peak / PyTorch TF32-off peak; "extra" = workspace GiB; "logp err" and
# "dX err" against float64 (see the two programs' headers).
BUILD=${BUILD:-build}
bin="$BUILD/tests/bench/gpu_policy_loss"
if ! nvidia-smi -L >/dev/null 2>&1; then
	echo "gpu_policy_loss.sh: skipped: no NVIDIA GPU (nvidia-smi -L failed)"; exit 0
fi
[ -x "$bin" ] || { echo "gpu_policy_loss.sh: $bin not built (make $bin)"; exit 1; }
py=${PYTHON:-python3}
tmp=${TMPDIR:-/tmp}/gpu_policy_loss.$$
if $py -c 'import torch' 2>/dev/null; then
	PYTHONUNBUFFERED=1 $py tests/bench/gpu_policy_loss.py >"$tmp.py" || { cat "$tmp.py"; exit 1; }
else
	echo "gpu_policy_loss.sh: PyTorch not importable: baseline skipped" >"$tmp.py"
fi
"$bin" >"$tmp.bin" || { cat "$tmp.bin"; exit 1; }
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
echo "fused policy loss, N=16384 d=1024, forward+backward (CISPO), card: $card, $(date -u +%Y-%m-%d)"
grep '^CEIL|' "$tmp.py" | awk -F'|' '{printf "  ceiling: %-36s %7.1f TFLOP/s\n", $2, $3}'
cat "$tmp.py" "$tmp.bin" | grep '^ROW|' | awk -F'|' '
	$2 == "pytorch" && $4 == "fp32 (TF32 off)" { base_t[$3] = $5; base_m[$3] = $6 }
	{ rows[++n] = $0 }
	END {
		printf "%-8s %-7s %-20s %8s %9s %8s %9s %9s %9s %6s %6s\n", "impl", "V", "mode", "ms", "peak GiB",
		       "TFLOP/s", "logp err", "dX err", "vs pt-off", "mem", "extra"
		for (i = 1; i <= n; i++) {
			split(rows[i], f, "|")
			sp = (f[3] in base_t) ? sprintf("%.2fx", base_t[f[3]] / f[5]) : "-"
			mm = (f[3] in base_m) ? sprintf("%.3f", f[6] / base_m[f[3]]) : "-"
			printf "%-8s %-7s %-20s %8s %9s %8s %9s %9s %9s %6s %6s\n", f[2], f[3], f[4], f[5], f[6], f[7],
			       f[8], f[10], sp, mm, f[9]
		}
	}'
grep -v '^ROW|\|^CEIL|' "$tmp.py" "$tmp.bin" 2>/dev/null | sed 's/^/  note: /'
rm -f "$tmp.py" "$tmp.bin"
