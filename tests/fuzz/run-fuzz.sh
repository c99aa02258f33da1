#!/bin/bash
# run-fuzz.sh OUT [SECONDS]: the libFuzzer target (tests/fuzz/fuzz_policy.c) for a bounded time
# from a fixed seed, as make check runs it; a disagreement with the byte model or a sanitizer
# report fails (the input is kept in OUT/fuzz/crash-*). make fuzz runs it long.
set -u
OUT=${1:?usage: run-fuzz.sh OUT [SECONDS]}
SECS=${2:-15}
NAME=fuzz
. "$(dirname "$0")/../testlib.sh"
need_files "$OUT/tests/fuzz_policy"
mkdir -p "$OUT/fuzz/check-corpus"
"$OUT/tests/fuzz_policy" -seed=1 -max_total_time="$SECS" -max_len=4096 \
	-artifact_prefix="$OUT/fuzz/" "$OUT/fuzz/check-corpus" >"$OUT/fuzz/check.log" 2>&1
rc=$?
runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$OUT/fuzz/check.log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' "$OUT/fuzz/check.log" | tail -1)
echo "info: ${runs:-0} inputs in ${SECS} s, $cov"
assert "libfuzzer-no-finding (rc $rc)" [ $rc = 0 ]
assert "libfuzzer-ran" [ "${runs:-0}" -gt 1000 ]
[ $rc = 0 ] || grep -E 'fuzz_policy:|ERROR|SUMMARY' "$OUT/fuzz/check.log" | head -5
finish
