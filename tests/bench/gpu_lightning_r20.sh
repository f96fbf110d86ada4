#!/bin/bash
# tests/bench/gpu_lightning_r20.sh - issue 10 round 20 (lc20): a prepared confirmation call
# (NOT run: lc20's device share was spent) for SWERVE_LIGHTNING_DACT=smem +
# SWERVE_LIGHTNING_FU_CODE=split ("spd", the round's candidate default) at K = 4 x 8192 and
# at 65,536-token micro-batches, each row interleaved with the default.
# Build here first (no GPU needed), from the repository root (or a clean worktree of it):
#   make -j2 BUILD=build/lc20 build/lc20/tests/bench/gpu_train build/lc20/tests/gpu/test_policy_model \
#        build/lc20/tests/gpu/test_lightning build/lc20/tests/bench/gpu_lightning
#   mkdir -p /tmp/b3/b && cp build/lc20/tests/bench/gpu_{lightning,train} build/lc20/tests/gpu/test_{lightning,policy_model} /tmp/b3/b/ \
#        && strip /tmp/b3/b/* && tar cJf build/lc20/bins3.txz -C /tmp/b3 b && cp tests/bench/gpu_lightning_r20.sh build/lc20/run3.sh
# then one device call: run(command="bash build/lc20/run3.sh", carry=["build/lc20"], timeout_s=400) (~150 s).
# Under `make bench-gpu` (no $OUT, no prepared binaries) it skips with a reason.
if [ -z "$OUT" ] || [ ! -f build/lc20/bins3.txz ]; then
  echo "gpu_lightning_r20: skipped: a prepared device call (needs \$OUT and build/lc20/bins3.txz, see its header)"
  exit 0
fi
R=build/lc20; (cd $R && tar xJf bins3.txz); B=$R/b; T="timeout -k 5"; L=/tmp/lg; mkdir -p $L
S="SWERVE_LIGHTNING_FU_CODE=split SWERVE_LIGHTNING_DACT=smem"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader > $OUT/card.txt
( LIGHTNING_TEST_ONLY="round 20" $T 150 stdbuf -oL $B/test_lightning > $L/t_la20.txt 2>&1; echo "rc=$?" >> $L/t_la20.txt ) &
( env $S SWERVE_TEST_ONLY="fused head vs CPU" $T 150 stdbuf -oL $B/test_policy_model > $L/t_pm_spd.txt 2>&1; echo "rc=$?" >> $L/t_pm_spd.txt ) &
wait
(cd $L && tar cJf $OUT/tests.txz *.txt)
ok=1
for f in $L/t_*.txt; do
  s=$(grep -E 'passed, .* failed' $f | tail -1); r=$(tail -1 $f)
  echo "-- $(basename $f .txt): $s $r" >> $OUT/summary.txt
  grep -E '^\[FAIL|FAIL|split vs shared' $f | head -8 >> $OUT/summary.txt
  case "$s" in *" 0 failed"*) ;; *) ok=0 ;; esac
done
$T 60 stdbuf -oL $B/gpu_lightning r20 > $OUT/r20.txt 2>&1; echo "rc=$?" >> $OUT/r20.txt
if [ $ok = 1 ]; then
  $T 300 stdbuf -oL $B/gpu_train x "spd:$S" again: "spd-2:$S" "big@1x32:" "big-spd@1x32:$S" \
    "big-2@1x32:" "big-spd-2@1x32:$S" > $OUT/train.txt 2>&1; echo "rc=$?" >> $OUT/train.txt
else
  echo "tests failed: gpu_train not run" >> $OUT/summary.txt
fi
cat $OUT/card.txt $OUT/summary.txt
grep -v '^$' $OUT/r20.txt
sed -n '/^mode/,$p' $OUT/train.txt 2>/dev/null | cut -c1-13,94-140
