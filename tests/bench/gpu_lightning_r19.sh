#!/bin/bash
# tests/bench/gpu_lightning_r19.sh - issue 10 round 19 (lc19): the prepared third device call.
# Build here first (no GPU needed), from the repository root:
#   make -j2 BUILD=build/lc19 build/lc19/tests/bench/gpu_train build/lc19/tests/gpu/test_policy_model \
#        build/lc19/tests/gpu/test_lightning build/lc19/tests/bench/gpu_lightning
#   mkdir -p /tmp/b3/b && cp build/lc19/tests/bench/gpu_{lightning,train} build/lc19/tests/gpu/test_{lightning,policy_model} /tmp/b3/b/ \
#        && strip /tmp/b3/b/* && tar cJf build/lc19/bins3.txz -C /tmp/b3 b && cp tests/bench/gpu_lightning_r19.sh build/lc19/run3.sh
# then one device call: run(command="bash build/lc19/run3.sh", carry=["build/lc19"]) (~100 s).
# lc19 call 3 (PREPARED, NOT RUN: round 19's device share was spent): DACT=l2 (next chunk's
# SiLU' source rows prefetched into L2, no extra shared memory) and why DACT=smem's -11%
# backward did not show end to end: cold-L2 rows, and gpu_train rows with the side stream
# off (POLICY_GPU_STREAMS=1), where kernel_ds's 16 KB more shared memory a CTA cannot keep
# a concurrent side-stream kernel off the lightning backward's SMs.
R=build/lc19; (cd $R && tar xJf bins3.txz); B=$R/b; T="timeout -k 5"; L=/tmp/lg; mkdir -p $L
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader > $OUT/card.txt
( LIGHTNING_TEST_ONLY="round 19" $T 150 stdbuf -oL $B/test_lightning > $L/t_la19.txt 2>&1; echo "rc=$?" >> $L/t_la19.txt ) &
( SWERVE_LIGHTNING_DACT=l2 SWERVE_TEST_ONLY="fused head vs CPU" $T 150 stdbuf -oL $B/test_policy_model > $L/t_pm_l2.txt 2>&1; echo "rc=$?" >> $L/t_pm_l2.txt ) &
wait
(cd $L && tar cJf $OUT/tests.txz *.txt)
ok=1
for f in $L/t_*.txt; do
  s=$(grep -E 'passed, .* failed' $f | tail -1); r=$(tail -1 $f)
  echo "-- $(basename $f .txt): $s $r" >> $OUT/summary.txt
  grep -E '^\[FAIL|FAIL|vs ldg' $f | head -12 >> $OUT/summary.txt
  case "$s" in *" 0 failed"*) ;; *) ok=0 ;; esac
done
$T 120 stdbuf -oL $B/gpu_lightning silu > $OUT/silu.txt 2>&1; echo "rc=$?" >> $OUT/silu.txt
if [ $ok = 1 ]; then
  $T 240 stdbuf -oL $B/gpu_train x "dsm:SWERVE_LIGHTNING_DACT=smem" "l2:SWERVE_LIGHTNING_DACT=l2" again: \
    "s1:POLICY_GPU_STREAMS=1" "s1-dsm:POLICY_GPU_STREAMS=1 SWERVE_LIGHTNING_DACT=smem" \
    "dsm-2:SWERVE_LIGHTNING_DACT=smem" "l2-2:SWERVE_LIGHTNING_DACT=l2" > $OUT/train.txt 2>&1; echo "rc=$?" >> $OUT/train.txt
else
  echo "tests failed: gpu_train not run" >> $OUT/summary.txt
fi
cat $OUT/card.txt $OUT/summary.txt
grep -E '^pass|keep|dsm|l2|G=|^cold' $OUT/silu.txt | grep -v '^#'
sed -n '/^mode/,$p' $OUT/train.txt 2>/dev/null
