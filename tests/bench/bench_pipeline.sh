#!/bin/sh
# bench_pipeline.sh - issue 7's benchmarks of the episode pipeline, on the
# bundled demo tasks (tests/e2e/demo/generate.py: pytest, make + TAP, node
# --test), gold patches:
#
# 1. Overhead per episode, excluding the test command's own time: from the
#    per-instance report.json of >= 100 episodes (the 6 tasks replicated with
#    distinct instance_ids), total_s - test_s (workspace, patch, test_patch,
#    parse, grade; the sandbox start is inside test_s), and the whole episode
#    time on a "canned" suite whose test command only prints the log the real
#    tests wrote (so that sandbox start and teardown are counted too).
# 2. Episodes per second with 1 and 2 workers, side by side in this one run
#    with a plain shell baseline doing the same work the usual way
#    (pipeline_baseline.sh: git worktree add, git apply, checkout + apply the
#    test patch, run the tests, grep the log, git worktree remove) under
#    xargs -P 1 / -P 2. Suites: "fast" (the demo tasks as they are), "canned"
#    (tests take no time), "slow" (`sleep 1;` before each test command).
#
# Both sides start warm: the repository cache / clones exist and one
# untimed run of each has been made. Wall time is the whole command
# (swerve eval: load, enqueue, run, reports; baseline: xargs of the script).
# Each rate is the median of TRIALS (default 3) interleaved rounds.
# Env: BUILD (build dir), TRIALS, K_OVER (copies of the 6 tasks for the
# overhead runs and the canned suite, default 17 = 102 episodes), K_FAST
# (default 5), K_SLOW (default 1).
set -e
BUILD=${BUILD:-build}
SWERVE=$(realpath "$BUILD/swerve")
HERE=$(cd "$(dirname "$0")" && pwd)
HELP="python3 $HERE/pipeline_helper.py"
TRIALS=${TRIALS:-3}
K_OVER=${K_OVER:-17}
K_FAST=${K_FAST:-5}
K_SLOW=${K_SLOW:-1}
W=$(mktemp -d /tmp/swerve-bench-pipeline-XXXXXX)
trap 'rm -rf "$W"' EXIT
export SWERVE_HOME="$W/home"

now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }

python3 "$HERE/../e2e/demo/generate.py" "$W/data" >/dev/null
while read -r name path; do "$SWERVE" repo add "$name" "$path" >/dev/null; done <"$W/data/repos.txt"

# warm-up (untimed): pristine trees, page cache, and the gold logs for "canned"
"$SWERVE" eval --tasks "$W/data/tasks.jsonl" --predictions gold --out "$W/gold" --run-id warm \
	--workers 2 --quiet >/dev/null 2>&1

# suites: "over" (>= 100 episodes, for the overhead figures), and for the
# rates "fast", "canned" and "slow"
$HELP replicate "$W/data/tasks.jsonl" "$W/over.jsonl" "$K_OVER"
$HELP canned "$W/data/tasks.jsonl" "$W/gold" "$W/overc.jsonl" "$K_OVER"
$HELP replicate "$W/data/tasks.jsonl" "$W/fast.jsonl" "$K_FAST"
$HELP canned "$W/data/tasks.jsonl" "$W/gold" "$W/canned.jsonl" "$K_OVER"
$HELP replicate "$W/data/tasks.jsonl" "$W/slow.jsonl" "$K_SLOW" "sleep 1; "

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS="$W/rows.tsv"
: >"$ROWS"

run_swerve() { # suite jobs trial
	out="$W/out-$1-$2-$3"
	t0=$(now)
	"$SWERVE" eval --tasks "$W/$1.jsonl" --predictions gold --out "$out" --run-id b \
		--workers "$2" --quiet >/dev/null 2>&1 || echo "bench: swerve eval $1 -j$2 exited $?" >&2
	t1=$(now)
	n=$(wc -l <"$W/$1.jsonl")
	printf '%s\tswerve\t%s\t%s\t%s\t%s\n' "$1" "$2" "$n" "$($HELP resolved "$out")" \
		"$(elapsed "$t0" "$t1")" >>"$ROWS"
}

run_baseline() { # suite jobs trial
	dir="$W/base-$1-$2-$3"
	mkdir -p "$dir"
	$HELP baseline-prep "$W/$1.jsonl" "$W/data/repos.txt" "$dir" >"$dir.list"
	t0=$(now)
	# the sandbox's PATH, so both run the same interpreters (not a user's pyenv shim)
	PATH=/usr/local/bin:/usr/bin:/bin xargs -P "$2" -n 1 sh "$HERE/pipeline_baseline.sh" \
		<"$dir.list" >/dev/null 2>&1 ||
		echo "bench: baseline $1 -P$2 had failures" >&2
	t1=$(now)
	n=$(wc -l <"$dir.list")
	printf '%s\tshell baseline\t%s\t%s\t%s\t%s\n' "$1" "$2" "$n" \
		"$($HELP baseline-resolved "$dir")" "$(elapsed "$t0" "$t1")" >>"$ROWS"
}

# baseline warm-up (untimed): the clones' objects in the page cache
$HELP replicate "$W/data/tasks.jsonl" "$W/warm.jsonl" 1
run_baseline warm 2 0
: >"$ROWS"

# overhead: one run of each >= 100-episode suite, one worker
run_swerve over 1 0
run_swerve overc 1 0
: >"$ROWS"

# rates: TRIALS rounds, each running every configuration once, baseline and
# swerve back to back, so that a change of machine load hits both alike
for trial in $(seq 1 "$TRIALS"); do
	for suite in fast canned slow; do
		for j in 1 2; do
			run_baseline "$suite" "$j" "$trial"
			run_swerve "$suite" "$j" "$trial"
		done
	done
done

echo "== episode pipeline: $(nproc) cores, $(date -u +%Y-%m-%d), load average before: $LOAD0"
echo
echo "Overhead per episode (ms), swerve eval --workers 1:"
echo "| measure | episodes | median | p90 | p99 | max |"
echo "|---|---|---|---|---|---|"
set -- $($HELP overhead "$W/out-over-1-0")
echo "| total - test time, fast suite | $1 | $2 | $3 | $4 | $5 |"
set -- $($HELP overhead "$W/out-overc-1-0")
echo "| total - test time, canned suite | $1 | $2 | $3 | $4 | $5 |"
# the canned suite's test command takes ~1 ms: its whole episode is overhead
python3 - "$W/out-overc-1-0" <<'EOF'
import glob, json, sys
ms = sorted(v["swerve"]["timings"]["total_s"] * 1000.0
            for p in glob.glob(sys.argv[1] + "/*/report.json")
            for v in json.load(open(p)).values())
q = lambda p: ms[min(len(ms) - 1, int(round(p / 100.0 * (len(ms) - 1))))]
print("| whole episode, canned suite (sandbox included) | %d | %.0f | %.0f | %.0f | %.0f |"
      % (len(ms), q(50), q(90), q(99), ms[-1]))
EOF
echo
echo "Median ms per phase (db timings), swerve eval --workers 1:"
echo "| suite | workspace | apply patch + test_patch | test run (sandbox + command) | total |"
echo "|---|---|---|---|---|"
set -- $($HELP phases "$W/out-over-1-0")
echo "| fast | $1 | $2 | $3 | $4 |"
set -- $($HELP phases "$W/out-overc-1-0")
echo "| canned | $1 | $2 | $3 | $4 |"
echo
echo "Episodes per second (gold patches), median of $TRIALS interleaved trials [min-max];"
echo "resolved = instances the runner found resolved, over all trials:"
$HELP table "$ROWS"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
