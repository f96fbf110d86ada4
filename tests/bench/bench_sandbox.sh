#!/bin/sh
# bench_sandbox.sh - whole-process cost of one sandboxed /bin/true, side by
# side in one hyperfine run: `swerve exec` (seccomp on), bubblewrap with
# every namespace (no seccomp), and plain /bin/true. (`make bench` runs the
# in-process benchmark, bench_sandbox, just before this script.)
# Prints the load average: on a busy 2-core machine every process hand-off
# waits for a CPU and all numbers grow.
BUILD=${BUILD:-build}
SWERVE=$BUILD/swerve
RUNS=${RUNS:-200}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)  ($(nproc) cores)"
if ! command -v hyperfine >/dev/null 2>&1; then
	echo "bench_sandbox.sh: skipped: hyperfine not installed (make deps)"
else
	BWRAP="bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
	if ! command -v bwrap >/dev/null 2>&1 || ! $BWRAP 2>/dev/null; then
		echo "bench_sandbox.sh: bwrap unavailable here; comparing with plain /bin/true only"
		BWRAP=/bin/true
	fi
	md=$(mktemp)
	hyperfine -N --warmup 10 --runs "$RUNS" --export-markdown "$md" \
		"$SWERVE exec -- /bin/true" "$BWRAP" "/bin/true" 2>&1 | grep -v '^ *$'
	cat "$md"
	rm -f "$md"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
