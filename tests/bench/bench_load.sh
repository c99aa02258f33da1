#!/bin/bash
# tests/bench/bench_load.sh - how long `pviommuctl load` takes, and what the verifier did.
# Fresh loads (unload --force in between) and reloads over a loaded system, LOADS (5) of each;
# prints the median, min and max wall time of the command next to the 1 s target, and the
# verifier's deterministic figure from `load -j`: programs loaded and instructions processed.
# Needs root and `make`. Its loads are pinned under a directory of their own (PVIOMMU_PIN_DIR):
# a pviommu already loaded on the host, and its VMs, are left alone.
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$SRC/build}
CTL=$OUT/pviommuctl
LOADS=${LOADS:-5}
NAME=bench_load
export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-bench-load-$$

[ "$(id -u)" = 0 ] || { echo "$NAME: skipped (needs root)"; exit 0; }
[ -x "$CTL" ] || { echo "$NAME: $CTL missing: make" >&2; exit 1; }
work=$(mktemp -d)
trap '"$CTL" unload --force >/dev/null 2>&1; rm -rf "$work"; rmdir "$PVIOMMU_PIN_DIR" 2>/dev/null' EXIT

# one_load KIND: time one load, its JSON in $work/KIND.N.json; prints the seconds
one_load() {
	local t0 t1
	t0=$(date +%s%N)
	"$CTL" load -j >"$work/$1.json" 2>"$work/$1.err" || { cat "$work/$1.err" >&2; return 1; }
	t1=$(date +%s%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}
stats() {	# stats FILE: median min max of a column of numbers
	sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%.2f %.2f %.2f", v[int((NR + 1) / 2)], v[1], v[NR] }'
}

: >"$work/fresh" ; : >"$work/reload"
for _ in $(seq "$LOADS"); do
	one_load fresh >>"$work/fresh" || exit 1
	one_load reload >>"$work/reload" || exit 1
	"$CTL" unload --force >/dev/null 2>&1
done
progs=$(jq -r '.verifier.programs' "$work/fresh.json")
insns=$(jq -r '.verifier.insns_processed' "$work/fresh.json")
read -r fm fmin fmax < <(stats "$work/fresh")
read -r rm rmin rmax < <(stats "$work/reload")
verdict() { awk -v m="$1" 'BEGIN { print (m <= 1.0) ? "met" : "MISSED" }'; }
echo
echo "pviommuctl load ($LOADS of each, wall time of the command; target 1 s)"
printf '  %-26s %6s s  (min %s, max %s) [target 1 s: %s]\n' "fresh load" "$fm" "$fmin" "$fmax" "$(verdict "$fm")"
printf '  %-26s %6s s  (min %s, max %s) [target 1 s: %s]\n' "reload over a loaded one" "$rm" "$rmin" "$rmax" "$(verdict "$rm")"
printf '  %-26s %6s programs, %s instructions processed by the verifier\n' "verifier (deterministic)" "$progs" "$insns"
