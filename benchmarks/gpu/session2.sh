#!/usr/bin/env bash
# A device session for the reference results of the zoo's seed-0 models: every reference suite,
# one process per suite (per model for the attacks suite) on one lent H200, each into its own
# store, merged with `mgbench results merge`. Prepared, not yet run: no machine was lent when it
# was ready. (The working tree the device receives is capped at 64 MiB: send it without the seed
# 1 and 2 checkpoints, e.g. untracked and excluded for the call.)
# A suite cut by the time limit keeps its finished cells (resumable: `make reference` on any
# machine computes the rest). Run from the repository root; needs .whl/site (README of
# benchmarks/gpu/session1.sh) and writes what it returns under $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/.whl/site:$PWD PYTHONUNBUFFERED=1 MGBENCH_CACHE=/tmp/mgcache MGBENCH_PROGRESS_SECONDS=60
start=$(date +%s)
python3 -c "from mgbench.data.digits import load_digits; load_digits()"
R=/tmp/ref; mkdir -p $R
S0=(resnet-tiny.digits.s0 mgnet-tiny.digits.s0 ltpa-tiny.digits.s0 tdam-tiny.digits.s0 gwi-resnet-tiny.digits.s0)
all=$(IFS=,; echo "${S0[*]}")
suite() {  # suite, models, store name
    timeout ${SUITE_S:-290} python3 -m mgbench run --suite "$1" --model "$2" --store "$R/$3.sqlite" --device cuda \
        > "$R/$3.log" 2>&1
    echo "$3: rc=$? after $(( $(date +%s) - start )) s"
}
suite clean "$all" clean &
suite corruptions "$all" corruptions &
for m in "${S0[@]}"; do suite attacks "$m" "attacks-$m" & done
suite attacks-mgnet-paper mgnet-tiny.digits.s0 paper &
wait
python3 -m mgbench results merge $R/*.sqlite --into $OUT/reference-s0.sqlite 2>&1 | tail -n 20
if [ -f benchmarks/perf/autoattack.py ]; then
    timeout ${PERF_S:-70} python3 benchmarks/perf/autoattack.py --device cuda --repeats 1 --out $OUT 2>&1 | tail -n 20
fi
tar czf $OUT/logs.tar.gz -C $R $(cd $R && ls *.log)
ls -la $OUT
echo "all done after $(( $(date +%s) - start )) s"
