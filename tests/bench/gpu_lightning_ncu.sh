#!/bin/sh
# gpu_lightning_ncu.sh - one device call of the sixth round (what limits the
# chunk step, and the changes that follow from it): the SASS's instruction,
# HGMMA and injected-wait counts per V3/V4 main kernel, the GPU tests under
# several kernel settings at once (they are bound by their CPU reference),
# Nsight Compute (full set, source counters, clocks left alone) of single
# forwards, then the benchmark binary alone (no PyTorch rows), optionally with
# a segment sweep of one V3 form. Logs and reports go to $OUT (or ./out) as a
# few files; a compact table is printed last. The binaries are built
# beforehand (carried, or `make` them). Knobs (defaults: the seventh round,
# /work/notes/la6.md; the sixth round's third call, which ran its committed
# default, was LA_TESTS="default f1 v4f1" NCU_RUNS=v4f2lone; its first call
# LA_TESTS="default f3" NCU_RUNS="v3lone v3f3lone v3pair v4lone v3long" LA_SWEEP=,
# its second LA_TESTS="default f4 f5 f6 f7 f7s4" NCU_RUNS="v3f6lone v3f7lone
# v3f7pair" LA_SWEEP=7, with the benchmark rows of those commits):
#   LA_TESTS   test runs: default, f1..f9 (SWERVE_LIGHTNING_WG_FORM), f7s4 (form 7
#              with the 4-stage main kernel forced), v4 (SWERVE_LIGHTNING_KERNEL=4),
#              v4f1, v4f2 (SWERVE_LIGHTNING_V4_FORM=1, 2)
#   NCU_RUNS   profiles: v3lone v3f3lone v3pair v4lone v3long (form 1/3, first
#              call), v3f6lone v3f6pair v3f7lone v3f7pair (forms 6, 7), v4f2lone
#              (V4 form 2), v3f9pair v3f9lone v4f3lone (seventh round); empty
#              (the default) for none
#   LA_SWEEP   a V3 form: time the forward and backward against G for it
# BUILD=build sh tests/bench/gpu_lightning_ncu.sh
BUILD=${BUILD:-build}
OUT=${OUT:-out}
R="$OUT/r"
mkdir -p "$R"
t="$BUILD/tests/gpu/test_lightning"
b="$BUILD/tests/bench/gpu_lightning"
if [ ! -x "$t" ] || [ ! -x "$b" ]; then
	echo "building $t $b"
	make --no-print-directory -j16 BUILD="$BUILD" "$t" "$b" >"$OUT/build.log" 2>&1 ||
		{ tail -20 "$OUT/build.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if command -v cuobjdump >/dev/null; then
	cuobjdump -sass "$b" >"$R/sass.txt" 2>&1
	awk '/Function : /{f=$3} /HGMMA/{h[f]++} /WARPGROUP.DEPBAR/{w[f]++}
		/WARPGROUP.ARRIVE/{a[f]++} /^ +\/\*[0-9a-f]+\*\//{n[f]++}
		END {for (k in h) if (k ~ /kernel4ILi128|wg6kernelILi128ELb0ELi2/)
			print "# sass", n[k], "instr", h[k], "HGMMA", w[k] + 0, "DEPBAR", a[k] + 0, "ARRIVE", k}' \
		"$R/sass.txt" | sort -k10 | sed 's/_ZN45_GLOBAL__N__[0-9a-f_]*lightning_cu_[0-9a-f]*//'
	# the output path: bulk and TMA store instructions, scoreboard waits
	awk '/Function : /{f=$3} /UBLKCP/{b[f]++} /UTMASTG|UTMAST/{t[f]++}
		/DEPBAR.LE SB0/{d[f]++} /LDGDEPBAR/{l[f]++}
		END {for (k in d) if (k ~ /kernel4ILi128ELi[23]|wg6kernelILi128ELb0ELi2ELi[789]E/)
			print "# sass out", b[k] + 0, "UBLKCP", t[k] + 0, "UTMASTG", d[k] + 0, "DEPBAR.SB0", l[k] + 0, "LDGDEPBAR", k}' \
		"$R/sass.txt" | sort -k10 | sed 's/_ZN45_GLOBAL__N__[0-9a-f_]*lightning_cu_[0-9a-f]*//'
	for k in wg6kernelILi128ELb0ELi2ELi9E kernel4ILi128ELi3E; do
		awk -v k="$k" '/Function : /{p = index($0, k) > 0} p && /DEPBAR|UTMA|UBLKCP|BAR.SYNC|LDGSTS/{print}' \
			"$R/sass.txt" | sed 's/^ *//; s/ *\/\* 0x[0-9a-f]* \*\/ *$//' | head -40 >"$OUT/sass_$k.txt"
	done
fi
# the tests: all runs at once, before any timing
pids=
for x in ${LA_TESTS-default f8 f7 v4f2}; do
	case $x in
	default) e= ;;
	f[0-9]) e="SWERVE_LIGHTNING_WG_FORM=${x#f}" ;;
	f7s4) e="SWERVE_LIGHTNING_WG_FORM=7 SWERVE_LIGHTNING_WG_STAGES=4" ;;
	v4) e="SWERVE_LIGHTNING_KERNEL=4" ;;
	v4f1) e="SWERVE_LIGHTNING_V4_FORM=1" ;;
	v4f2) e="SWERVE_LIGHTNING_V4_FORM=2" ;;
	*) continue ;;
	esac
	# shellcheck disable=SC2086
	timeout 200 env -u SWERVE_LIGHTNING_WG_FORM -u SWERVE_LIGHTNING_KERNEL -u SWERVE_LIGHTNING_V4_FORM -u SWERVE_LIGHTNING_V4_RULES $e "$t" \
		>"$R/test_$x.log" 2>&1 &
	pids="$pids $!"
done
# shellcheck disable=SC2086
[ -n "$pids" ] && wait $pids
# ncu: one forward each after a warm-up one (--launch-skip 1); kernel choice by env
prof() { # name "VAR=value ..." shape (B T H D)
	name=$1 envs=$2
	shift 2
	[ -n "$NCU" ] || return
	case " ${NCU_RUNS-} " in *" $name "*) ;; *) return ;; esac
	# shellcheck disable=SC2086
	timeout 120 env -u SWERVE_LIGHTNING_KERNEL -u SWERVE_LIGHTNING_WG_FORM $envs "$NCU" \
		--set full --import-source yes --clock-control none -k regex:kernel --launch-skip 1 \
		--launch-count 1 -f -o "$R/$name" "$b" once "$@" >"$R/$name.log" 2>&1
	echo "# ncu $name rc=$? $(grep '^# once' "$R/$name.log")"
	"$NCU" --import "$R/$name.ncu-rep" --page details --print-details all >"$R/$name.details.txt" 2>&1
	"$NCU" --import "$R/$name.ncu-rep" --page source --print-source sass --csv \
		>"$R/$name.source.csv" 2>"$R/$name.source.err"
	"$NCU" --import "$R/$name.ncu-rep" --page raw --csv >"$R/$name.raw.csv" 2>&1
}
prof v3lone "SWERVE_LIGHTNING_KERNEL=3" 4 8192 16 128
prof v3f3lone "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=3" 4 8192 16 128
prof v3pair "SWERVE_LIGHTNING_KERNEL=3" 8 2048 16 128
prof v4lone "SWERVE_LIGHTNING_KERNEL=4" 4 8192 16 128
prof v3long "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_SEGMENTS=1" 1 32768 16 128
prof v3f6lone "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=6" 4 8192 16 128
prof v3f6pair "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=6" 8 2048 16 128
prof v3f7lone "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=7" 4 8192 16 128
prof v3f7pair "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=7" 8 2048 16 128
prof v4f2lone "SWERVE_LIGHTNING_KERNEL=4 SWERVE_LIGHTNING_V4_FORM=2" 4 8192 16 128
prof v3f9pair "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=9" 8 2048 16 128
prof v3f9lone "SWERVE_LIGHTNING_KERNEL=3 SWERVE_LIGHTNING_WG_FORM=9 SWERVE_LIGHTNING_WG_STAGES=4" 4 8192 16 128
prof v4f3lone "SWERVE_LIGHTNING_KERNEL=4 SWERVE_LIGHTNING_V4_FORM=3" 4 8192 16 128
# the benchmark rows (the default, forced kernels and forms, repeats), after a
# segment sweep of one V3 form where LA_SWEEP names it
if [ -n "${LA_SWEEP-}" ]; then
	env -u SWERVE_LIGHTNING_KERNEL -u SWERVE_LIGHTNING_WG_FORM SWERVE_BENCH_SWEEP_FORM="$LA_SWEEP" \
		timeout 300 "$b" sweep >"$OUT/bench.log" 2>&1
else
	env -u SWERVE_LIGHTNING_KERNEL -u SWERVE_LIGHTNING_WG_FORM timeout 200 "$b" >"$OUT/bench.log" 2>&1
fi
echo "bench rc=$?" >>"$OUT/bench.log"
(cd "$R" && tar czf ../ncu_text.tgz ./*.txt ./*.csv ./*.log ./*.err 2>/dev/null)
(cd "$R" && ls ./*.ncu-rep >/dev/null 2>&1 && tar czf ../ncu_rep.tgz ./*.ncu-rep)
[ -f "$OUT/ncu_rep.tgz" ] && [ "$(stat -c %s "$OUT/ncu_rep.tgz")" -gt 15000000 ] &&
	rm -f "$OUT/ncu_rep.tgz" && echo "# ncu reports too large to bring back"
fail=0
for f in "$R"/test_*.log; do
	[ -f "$f" ] || continue
	n=$(basename "$f" .log)
	grep -h 'FAIL\|failed:' "$f" | head -8
	r=$(tail -1 "$f")
	echo "$n: $r"
	case "$r" in *" 0 failed"*) ;; *) fail=1 ;; esac
	awk -v f="$n" '{for (i = 1; i < NF; i++) if ($i == "rel") print $(i + 1), f ":", $0}' \
		"$f" | sort -g | tail -1 | sed 's/^[^ ]* /# worst rel /'
done
for f in "$R"/*.details.txt; do
	[ -f "$f" ] || continue
	echo "== $(basename "$f" .details.txt)"
	grep -E '^ +(Duration|DRAM Throughput|L2 Cache Throughput|Issue Slots Busy|Warp Cycles Per Issued Instruction|Executed Instructions) ' "$f" |
		sort -u | awk '{$1 = $1; print}' | tr '\n' ';'
	echo
done
rm -rf "$R"
grep -h '^impl\|^swerve\|^bench rc\|^# device\|^# decode\|^# plan' "$OUT/bench.log"
exit $fail
