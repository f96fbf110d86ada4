#!/bin/sh
# demo.sh - `make demo`: swerve on the bundled example data.
#
# 1. tests/e2e/demo/generate.py builds three small real repositories
#    (Python + pytest, C + make + TAP, JavaScript + node --test) with six
#    SWE-bench tasks and prediction files (gold, empty, wrong, broken, cheat,
#    mixed) under $BUILD/demo.
# 2. The repositories go into a repository cache of the demo's own.
# 3. `swerve eval` evaluates the gold patches, then a mixed model run, each
#    in the sandbox, and prints the SWE-bench run reports.
set -e
BUILD=${BUILD:-build}
SWERVE="$BUILD/swerve"
DEMO="$BUILD/demo"
export SWERVE_HOME="$DEMO/home"

echo "== swerve demo: $("$SWERVE" --version | head -n 1)"
rm -rf "$DEMO"
mkdir -p "$DEMO"
python3 tests/e2e/demo/generate.py "$DEMO/data"
while read -r name path; do
	"$SWERVE" repo add "$name" "$path"
done <"$DEMO/data/repos.txt"

for preds in gold mixed; do
	if [ "$preds" = gold ]; then p=gold; else p="$DEMO/data/predictions-$preds.jsonl"; fi
	echo
	echo "== swerve eval --predictions $preds"
	rc=0
	"$SWERVE" eval --tasks "$DEMO/data/tasks.jsonl" --predictions "$p" --workers 2 \
		--out "$DEMO/out-$preds" --run-id "demo-$preds" || rc=$?
	# exit 1 = some instances had errors: expected for none of these runs
	[ $rc -eq 0 ] || { echo "demo: swerve eval exited $rc"; exit 1; }
done
echo
echo "== per-instance outputs: $DEMO/out-mixed/<instance_id>/{patch.diff,test_output.txt,report.json}"
ls "$DEMO/out-mixed"
