#!/bin/bash
# pviommuctl as an operator meets it: bpftool's habits (-j/-v before or after the command,
# one "Error: ..." line per failure, exit codes, --version, help CMD by prefix), the
# metrics (stats --prometheus, events --follow -j), the bash completion, the man pages and
# the systemd unit. The real pviommuctl with a pin directory of its own.
set -u
NAME=cli
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$SRC/build}
CTL=$OUT/pviommuctl
PVHC=$OUT/tests/pvhc
# shellcheck source=tests/testlib.sh
. "$SRC/tests/testlib.sh"
export PVIOMMU_PIN_DIR=/sys/fs/bpf/pviommu-cli-$$
TMP=$(mktemp -d)
HPID=
cleanup() {
	[ -n "$HPID" ] && kill "$HPID" 2>/dev/null
	"$CTL" unload --force >/dev/null 2>&1
	rm -rf "$TMP"
}
FINISH_HOOK=cleanup
trap cleanup EXIT
skip() { echo "skip $1${2:+: $2}"; skipped=$((skipped + 1)); }

need_files "$CTL" "$PVHC"
need_cmds python3 bpftool

# run CMD...: its exit status in $rc, its output in $TMP/out and $TMP/err
run() { "$@" >"$TMP/out" 2>"$TMP/err"; rc=$?; }
# fails NAME RC CMD...: CMD exits RC and says why in exactly one "Error: " line on stderr
fails() {
	local name=$1 want=$2; shift 2
	run "$@"
	if [ "$rc" != "$want" ]; then
		nok "$name" "exit $rc, want $want: $(head -c 300 "$TMP/err")"
	elif [ "$(wc -l <"$TMP/err")" != 1 ] || ! grep -q '^Error: ' "$TMP/err"; then
		nok "$name" "stderr is not one 'Error: ' line: $(head -c 300 "$TMP/err")"
	else
		ok "$name"
	fi
}
# fails_json NAME RC CMD... (CMD has -j): exit RC, stdout one JSON object with "error",
# nothing on stderr
fails_json() {
	local name=$1 want=$2; shift 2
	run "$@"
	if [ "$rc" != "$want" ]; then
		nok "$name" "exit $rc, want $want"
	elif [ -s "$TMP/err" ]; then
		nok "$name" "stderr: $(head -c 300 "$TMP/err")"
	elif ! python3 -c 'import json,sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
assert isinstance(json.loads(lines[0])["error"], str)' "$TMP/out" 2>/dev/null; then
		nok "$name" "stdout is not one JSON error object: $(head -c 300 "$TMP/out")"
	else
		ok "$name"
	fi
}
# jq_eq NAME FILE PYEXPR WANT: python's value of PYEXPR over the JSON document j
jq_eq() {
	local got
	got=$(python3 -c 'import json,sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$2" "$3" 2>&1 | tail -n 1)
	if [ "$got" = "$4" ]; then ok "$1"; else nok "$1" "$3 = '$got', want '$4'"; fi
}

# ---- the commands, as 'pviommuctl help' lists them ----------------------------------------
run "$CTL" help
assert "help exits 0" [ "$rc" = 0 ]
CMDS=$(sed -n '/^Commands/,/^$/s/^  \([a-z]\+\) .*/\1/p' "$TMP/out" | tr '\n' ' ')
assert "help lists the commands ($CMDS)" [ "$(wc -w <<<"$CMDS")" -ge 10 ]

# ---- --version -------------------------------------------------------------------------
ABI=$(sed -n 's/^#define PVIOMMU_ABI_VERSION[[:space:]]*\([0-9]*\).*/\1/p' "$SRC/bpf/pviommu.h")
VER=$(cat "$SRC/VERSION")
run "$CTL" --version
assert "--version exits 0" [ "$rc" = 0 ]
assert "--version names the version ($VER)" grep -qx "pviommuctl v$VER" "$TMP/out"
assert "--version names the ABI ($ABI)" grep -q "^ABI $ABI " "$TMP/out"
run "$CTL" --version -j
jq_eq "--version -j: the version" "$TMP/out" 'j["version"]' "$VER"
jq_eq "--version -j: the ABI" "$TMP/out" 'j["abi"]' "$ABI"
run "$CTL" -V
assert "-V is --version" grep -qx "pviommuctl v$VER" "$TMP/out"

# ---- help CMD, by prefix -----------------------------------------------------------------
for c in $CMDS; do
	[ "$c" = help ] && continue
	run "$CTL" help "$c"
	if [ "$rc" = 0 ] && grep -q "^Usage: pviommuctl .*$c" "$TMP/out"; then ok "help $c"
	else nok "help $c" "exit $rc: $(head -c 200 "$TMP/out" "$TMP/err")"; fi
done
run "$CTL" help mapp
assert "help takes a unique prefix (mapp: mappings)" grep -q "^Usage: pviommuctl .*mappings" "$TMP/out"
fails "help with an ambiguous prefix" 1 "$CTL" help m
assert "... names the candidates" grep -q "which command is 'm'? mappings, mode" "$TMP/err"
fails "help of no command" 1 "$CTL" help frobnicate
fails "help with two words" 1 "$CTL" help load unload

# ---- errors: one line, exit 1; JSON with -j before or after the command --------------------
fails "unknown command" 1 "$CTL" frobnicate
fails_json "unknown command, -j" 1 "$CTL" -j frobnicate
fails "unknown global option" 1 "$CTL" --frobnicate status
for c in $CMDS; do
	[ "$c" = help ] && continue
	fails "$c --frobnicate" 1 "$CTL" "$c" --frobnicate
	fails_json "$c --frobnicate -j" 1 "$CTL" "$c" --frobnicate -j
	fails_json "-j $c --frobnicate" 1 "$CTL" -j "$c" --frobnicate
done
fails "an option without its value" 1 "$CTL" mappings --pid
assert "... says which" grep -q -- "--pid wants an argument" "$TMP/err"
fails "detach without a target" 1 "$CTL" detach
fails "mode without a mode" 1 "$CTL" mode
fails "status before load" 1 "$CTL" status
fails_json "status --json before load: one object" 1 "$CTL" status --json
jq_eq "... saying not loaded" "$TMP/out" 'j["loaded"]' False
jq_eq "... with the probed features" "$TMP/out" '"ringbuf" in j["features"]' True
fails "not root: exit 2" 2 setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" status
fails "run before load" 1 "$CTL" run -- /bin/true

# ---- loaded: -j and -v anywhere before '--' ------------------------------------------------
run "$CTL" load -j
assert "load -j" [ "$rc" = 0 ]
jq_eq "load -j: JSON" "$TMP/out" 'j["loaded"]' True
coproc HOLD { exec "$PVHC" --hold register -- dev-add 00:04.0 -- dev-add 00:05.0 -- \
	map 00:04.0 0x100000 0x3000 rw -- map 00:04.0 0x200010 100 w -- map 00:05.0 0x7000 64 r; }
read -r -t 20 word HPID <&"${HOLD[0]}"
if [ "${word:-}" = ready ]; then ok "a VM (pvhc holder) registered and mapped"
else nok "a VM (pvhc holder) registered and mapped"; HPID=; fi

for form in "status -j" "status --json" "-j status" "status -v -j" "status -jv"; do
	# shellcheck disable=SC2086
	run "$CTL" $form
	if [ "$rc" = 0 ] && python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["loaded"]' "$TMP/out" 2>/dev/null
	then ok "$form: JSON"; else nok "$form: JSON" "exit $rc: $(head -c 200 "$TMP/out" "$TMP/err")"; fi
done
run "$CTL" mappings --pid "$HPID" -j
jq_eq "mappings --pid P -j: the VM's 3 mappings" "$TMP/out" 'len(j)' 3
run "$CTL" mappings -j --bdf 00:05.0
jq_eq "mappings -j --bdf B: 1 mapping" "$TMP/out" '[(m["bdf"], m["size"]) for m in j]' "[('0000:00:05.0', 64)]"
fails_json "a bad value, -j after it" 1 "$CTL" mappings --bdf zz -j

# run: refused QEMU arguments exit 1 (2 is 'this host cannot run pviommu'), one Error line;
# the global options end where QEMU's arguments begin
QEMU=$(command -v qemu-system-x86_64)
if [ -n "$QEMU" ]; then
	fails "run refuses iommu_platform=off: exit 1" 1 "$CTL" run -- "$QEMU" -device virtio-net-pci,iommu_platform=off
	assert "... and says why" grep -q "no device identity" "$TMP/err"
	fails "run refuses -drive if=virtio: exit 1" 1 "$CTL" run -- "$QEMU" -drive file=/dev/null,if=virtio
	fails "run refuses a transitional virtio device: exit 1" 1 "$CTL" run -- "$QEMU" -device virtio-blk-pci-transitional
	fails_json "run --mode audit -j -- QEMU (refused)" 1 "$CTL" run --mode audit -j -- "$QEMU" -device virtio-net-pci,iommu_platform=off
else
	skip "run refusals" "no qemu-system-x86_64"
fi
fails "run --mode bogus" 1 "$CTL" run --mode bogus -- /bin/true
fails "run of a missing program: exit 127" 127 "$CTL" run -- /nonexistent/qemu
run "$CTL" run -v -- /bin/echo -j -v --json x
assert "run: -j -v after '--' are the program's (got: $(cat "$TMP/out"))" grep -qx -- "-j -v --json x" "$TMP/out"
run "$CTL" run --mode audit /bin/echo -j x
assert "run: -j after the program is the program's (got: $(cat "$TMP/out"))" grep -qx -- "-j x" "$TMP/out"
run "$CTL" run --lib "$OUT/libpviommu-qemu.so" -j /bin/echo y
assert "run --lib PATH -j PROG: -j is pviommuctl's (got: $(cat "$TMP/out"))" grep -qx "y" "$TMP/out"

finish
