#!/bin/sh
# pipeline_baseline.sh DIR - the plain-shell baseline of bench_pipeline.sh:
# one SWE-bench episode done the usual way, on the host, no isolation.
# DIR holds what pipeline_helper.py baseline-prep wrote (base, patch,
# test_patch, files, cmd, ids, parser, clone). Steps, as SWE-bench's harness
# does them inside its container:
#   git worktree add at the base commit; git apply the patch; git checkout
#   the files the test_patch touches, git apply the test_patch; run the test
#   command; grep the log for each FAIL_TO_PASS / PASS_TO_PASS id; remove the
#   worktree. Writes DIR/result: 1 resolved, 0 not.
d=$1
clone=$(cat "$d/clone")
base=$(cat "$d/base")
wt="$d.wt" # a unique basename: concurrent `git worktree add`s get distinct admin dirs
# concurrent worktree add/remove on one clone race ("failed to read
# .git/worktrees/X/commondir"): serialise them on a lock, as a careful script does
lock="$clone/.git/swerve-bench.lock"
flock "$lock" git -C "$clone" worktree add -q --detach "$wt" "$base" || exit 1
cd "$wt" || exit 1
ok=1
if git apply "$d/patch"; then
	# shellcheck disable=SC2046
	git checkout -q "$base" -- $(cat "$d/files") &&
		git apply "$d/test_patch" || ok=0
	sh -c "$(cat "$d/cmd")" >"$d/log" 2>&1
	parser=$(cat "$d/parser")
	while IFS= read -r id; do
		case $parser in
		pytest) grep -qF "PASSED $id" "$d/log" || ok=0 ;;
		*) # TAP: "ok N - name", possibly indented, possibly with a directive
			grep -E '^ *ok [0-9]+ - ' "$d/log" | sed -E 's/^ *ok [0-9]+ - //; s/ # .*$//' |
				grep -qxF "$id" || ok=0 ;;
		esac
	done <"$d/ids"
else
	ok=0
fi
echo $ok >"$d/result"
cd / && flock "$lock" git -C "$clone" worktree remove --force "$wt"
