# shellcheck shell=bash
# tests/testlib.sh - the results of a host-side test script (bash; set NAME, then source it).
# The shell twin of tests/testlib.h.
#
#   ok NAME | nok NAME [WHY] | skip NAME [WHY] | assert NAME CMD...    one result each
#   is NAME WANT GOT   one result: passed when GOT is the string WANT (else "got 'GOT', want 'WANT'")
#   finish        print "$NAME: N passed, M failed[, K skipped]" (run-all.sh sums these) and
#                 exit 0 only when nothing failed; calls $FINISH_HOOK first when it is set
#   need_files FILE...  /  need_cmds CMD...   prerequisites: a missing one is a failed test,
#                 then finish
passed=0 failed=0 skipped=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
nok() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
skip() { echo "skip $1${2:+: $2}"; skipped=$((skipped + 1)); }
assert() { local n=$1; shift; if "$@"; then ok "$n"; else nok "$n"; fi; }
is() { if [ "$2" = "$3" ]; then ok "$1"; else nok "$1" "got '$3', want '$2'"; fi; }
finish() {
	[ -z "${FINISH_HOOK:-}" ] || "$FINISH_HOOK"
	if [ "$skipped" -gt 0 ]; then
		echo "$NAME: $passed passed, $failed failed, $skipped skipped"
	else
		echo "$NAME: $passed passed, $failed failed"
	fi
	[ "$failed" = 0 ]
	exit
}
need_files() {
	local f
	for f; do
		[ -e "$f" ] || { echo "$NAME: $f missing (make; make guest)" >&2; nok "prerequisites"; finish; }
	done
}
need_cmds() {
	local c
	for c; do
		command -v "$c" >/dev/null || { echo "$NAME: $c not found" >&2; nok "prerequisites"; finish; }
	done
}
