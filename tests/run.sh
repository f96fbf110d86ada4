#!/bin/sh
# tests/run.sh - runs test binaries and prints one summary line at the end.
# Arguments: kind:path, kind in unit|sec|secslow|secprep|e2e|asan (Criterion
# binaries; secslow runs with SWERVE_SANDBOX_SLOW=1, secprep with
# SWERVE_TEST_PREPARE=1),
# fuzz (corpus replay: exit status), gpu (own harness: "N passed, N failed").
# Each binary's full output goes to $BUILD/test-logs/; a failing binary's
# output is also printed. Exit status: 0 iff nothing failed.
BUILD=${BUILD:-build}
LOGS="$BUILD/test-logs"
mkdir -p "$LOGS"
: "${SWERVE_TEST_TIMEOUT:=1200}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
tp=0; tf=0; ts=0; nbin=0; badbin=""
for arg in "$@"; do
	kind=${arg%%:*}; bin=${arg#*:}
	name=$(echo "$bin" | sed "s|^$BUILD/||; s|/|_|g")
	log="$LOGS/$kind-$name.log"
	nbin=$((nbin + 1))
	case $kind in
	fuzz)
		corpus="tests/fuzz/corpus/${bin##*/replay_}"
		timeout "$SWERVE_TEST_TIMEOUT" "$bin" "$corpus" >"$log" 2>&1
		rc=$?
		if [ $rc -eq 0 ]; then p=1; f=0; else p=0; f=1; fi; s=0
		;;
	gpu)
		timeout "$SWERVE_TEST_TIMEOUT" "$bin" >"$log" 2>&1
		rc=$?
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
		p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); p=${p:-0}
		f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p'); f=${f:-1}
		s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
		[ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
		;;
	*)
		# secslow: the security suite again on the sandbox's slow path;
		# secprep: again, each case from a prepared sandbox
		slow=0; [ "$kind" = secslow ] && slow=1
		prep=0; [ "$kind" = secprep ] && prep=1
		SWERVE_SANDBOX_SLOW=$slow SWERVE_TEST_PREPARE=$prep timeout "$SWERVE_TEST_TIMEOUT" "$bin" --jobs=2 --verbose >"$log" 2>&1
		rc=$?
		syn=$(grep 'Synthesis:' "$log" | tail -n 1)
		t=$(echo "$syn" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p'); t=${t:-0}
		p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p'); p=${p:-0}
		f=$(echo "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p'); f=${f:-0}
		c=$(echo "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p'); c=${c:-0}
		s=$(grep -c '\[SKIP\]' "$log")
		f=$((f + c))
		# skipped tests are counted in Tested but not in Passing
		f=$((f > 0 ? f : 0))
		if [ -z "$syn" ] || { [ $rc -ne 0 ] && [ $f -eq 0 ]; }; then f=$((f + 1)); fi
		;;
	esac
	tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
	if [ "$f" -gt 0 ]; then
		badbin="$badbin $bin"
		printf 'FAIL %-6s %s (%s passed, %s failed) -- log: %s\n' "$kind" "$bin" "$p" "$f" "$log"
		tail -n 60 "$log" | sed 's/^/    | /'
	else
		printf 'ok   %-6s %s (%s passed, %s skipped)\n' "$kind" "$bin" "$p" "$s"
		grep '\[SKIP\]' "$log" | sed 's/^/    | /' | head -n 20
	fi
done
[ -n "$badbin" ] && echo "failing binaries:$badbin"
echo "$tp passed, $tf failed, $ts skipped ($nbin test binaries)"
[ "$tf" -eq 0 ]
