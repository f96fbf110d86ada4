#!/bin/sh
# gpu_lightning_v4.sh - one device call for the V4 round (two warpgroups,
# 128-token chunks): the SASS's HGMMA count per main kernel, the GPU tests under
# the default kernel and forced V4 (SWERVE_LIGHTNING_KERNEL=4) and the policy
# model's GPU test under forced V4 (its D = 64 shapes), all three at once (they
# are bound by their CPU references), then the benchmark binary alone (no
# PyTorch rows) with the V4 segment sweep. Logs go to $OUT (or ./out); the
# compact table is printed last. The binaries are built beforehand (carried, or
# `make` them): BUILD=build sh tests/bench/gpu_lightning_v4.sh
BUILD=${BUILD:-build}
OUT=${OUT:-out}
mkdir -p "$OUT"
t="$BUILD/tests/gpu/test_lightning"
p="$BUILD/tests/gpu/test_policy_model"
b="$BUILD/tests/bench/gpu_lightning"
if [ ! -x "$t" ] || [ ! -x "$p" ] || [ ! -x "$b" ]; then
	echo "building $t $p $b"
	make --no-print-directory -j16 BUILD="$BUILD" "$t" "$p" "$b" >"$OUT/build.log" 2>&1 ||
		{ tail -20 "$OUT/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
if command -v cuobjdump >/dev/null; then
	cuobjdump -sass "$t" 2>/dev/null | awk '/Function : /{f=$3} /HGMMA/{c[f]++}
		END {for (k in c) if (k ~ /kernel4|wg6kernelILi128ELb0/) print "# HGMMA", c[k], k}'
fi
env -u SWERVE_LIGHTNING_KERNEL "$t" >"$OUT/test_default.log" 2>&1 &
p1=$!
SWERVE_LIGHTNING_KERNEL=4 "$t" >"$OUT/test_v4.log" 2>&1 &
p2=$!
SWERVE_LIGHTNING_KERNEL=4 timeout 200 "$p" >"$OUT/test_policy_v4.log" 2>&1 &
p3=$!
wait $p1 $p2 $p3
# a V4 that failed its tests is left out of the benchmark (a fault would end it)
case "$(tail -1 "$OUT/test_v4.log")" in
*" 0 failed"*) env -u SWERVE_LIGHTNING_KERNEL timeout 200 "$b" sweep4 >"$OUT/bench.log" 2>&1 ;;
*) env -u SWERVE_LIGHTNING_KERNEL SWERVE_BENCH_NO_V4=1 timeout 200 "$b" >"$OUT/bench.log" 2>&1 ;;
esac
echo "bench rc=$?" >>"$OUT/bench.log"
fail=0
for f in test_default test_v4 test_policy_v4; do
	grep -h 'FAIL\|failed:' "$OUT/$f.log" | head -8
	r=$(tail -1 "$OUT/$f.log")
	echo "$f: $r"
	case "$r" in *" 0 failed"*) ;; *) fail=1 ;; esac
done
for f in test_default test_v4; do
	awk -v f=$f '{for (i = 1; i < NF; i++) if ($i == "rel") print $(i + 1), f ":", $0}' \
		"$OUT/$f.log" | sort -g | tail -1 | sed 's/^[^ ]* /# worst rel /'
done
grep -h '^# plan\|^# sweep4' "$OUT/bench.log"
grep -h '^impl\|^swerve\|^bench rc\|^# device\|^# decode' "$OUT/bench.log"
exit $fail
