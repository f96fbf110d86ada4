#!/bin/sh
# gpu_lightning_tune.sh - one device call for a lightning tuning round: the GPU
# tests under every selectable kernel variant, the segment/stage sweep of V3
# (forward and backward alone, forced G, 2- and 4-stage main kernel), then the
# side-by-side benchmark (gpu_lightning.sh). Logs go to $OUT (or ./out); the
# compact table is printed last. Usage: BUILD=build sh tests/bench/gpu_lightning_tune.sh
BUILD=${BUILD:-build}
OUT=${OUT:-out}
mkdir -p "$OUT"
t="$BUILD/tests/gpu/test_lightning"
b="$BUILD/tests/bench/gpu_lightning"
# binaries built elsewhere (carried) are used when they load here, else built
if [ ! -x "$t" ] || [ ! -x "$b" ] || LD_TRACE_LOADED_OBJECTS=1 "$b" | grep -q 'not found'; then
	echo "building $t $b"
	make --no-print-directory "$t" "$b" >"$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
fail=0
for cfg in "" SWERVE_LIGHTNING_WG_STAGES=4 SWERVE_LIGHTNING_WG_PLAN=3 SWERVE_LIGHTNING_WG_FORM=0 \
	SWERVE_LIGHTNING_WG_FORM=2 SWERVE_LIGHTNING_KERNEL=1 SWERVE_LIGHTNING_KERNEL=2; do
	r=$(env $cfg "$t" 2>&1 | tee -a "$OUT/tests.log" | tail -1)
	echo "test_lightning [${cfg:-default}]: $r"
	case "$r" in *" 0 failed"*) ;; *) fail=1 ;; esac
done
"$b" sweep >"$OUT/sweep.log" 2>&1 || { tail -5 "$OUT/sweep.log"; exit 1; }
grep '^# plan\|^# sweep' "$OUT/sweep.log"
BUILD=$BUILD sh "$(dirname "$0")/gpu_lightning.sh" >"$OUT/bench.log" 2>&1 || fail=1
cat "$OUT/bench.log"
exit $fail
