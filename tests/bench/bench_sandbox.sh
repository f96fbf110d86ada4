#!/bin/sh
# bench_sandbox.sh - whole-process cost of one sandboxed /bin/true, side by
# side in one hyperfine run: `swerve exec` (seccomp on) through a resident
# `swerve serve` (started here, on a private socket), the one-shot path
# (`swerve-exec exec`: what `swerve exec` runs when no server listens, minus
# the launcher's hop), bubblewrap with every namespace (no seccomp), and
# plain /bin/true; then the launcher's own cost: `swerve --version`
# (launcher + swerve-core) against `swerve-core --version` alone. (`make bench` runs the in-process benchmark,
# bench_sandbox, just before this script.)
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
	sdir=$(mktemp -d)
	SWERVE_SOCKET=$sdir/exec.sock
	export SWERVE_SOCKET
	$SWERVE serve --socket "$SWERVE_SOCKET" --workers "$(nproc)" 2>"$sdir/serve.log" &
	spid=$!
	for i in $(seq 100); do [ -S "$SWERVE_SOCKET" ] && break; sleep 0.05; done
	sleep 1 # the workers' warm-up runs
	hyperfine -N --warmup 20 --runs "$RUNS" --export-markdown "$md" --export-json "$md.json" \
		"$SWERVE exec -- /bin/true" "$BUILD/swerve-exec exec -- /bin/true" \
		"$BWRAP" "/bin/true" "$SWERVE --version" "$BUILD/swerve-core --version" 2>&1 |
		grep -v '^ *$'
	kill "$spid"
	wait "$spid" 2>/dev/null
	cat "$md"
	# the goal is a ratio: print the means exactly, each against bwrap's
	python3 - "$md.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
bw = [x for x in r if x["command"].startswith("bwrap")]
base = bw[0]["mean"] if bw else None
print("\n%-44s %9s %9s %9s" % ("command", "mean ms", "median ms", "x bwrap"))
for x in r:
    name = x["command"] if len(x["command"]) < 44 else x["command"][:41] + "..."
    ratio = "%.3f" % (x["mean"] / base) if base else "-"
    print("%-44s %9.3f %9.3f %9s" % (name, x["mean"] * 1e3, x["median"] * 1e3, ratio))
PY
	rm -rf "$md" "$md.json" "$sdir"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
