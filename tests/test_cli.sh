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
HPID='' H2PID='' QPID=''
cleanup() {
	local p
	for p in $HPID $H2PID $QPID; do kill "$p" 2>/dev/null; done
	HPID='' H2PID='' QPID=''
	"$CTL" unload --force >/dev/null 2>&1
	rm -rf "$TMP"
}
FINISH_HOOK=cleanup
trap cleanup EXIT

need_files "$CTL" "$PVHC"
need_cmds python3 bpftool

# hold VAR PVHC-ARGS...: a pvhc process that made its calls and stays (its domain lives):
# its pid in VAR, its output in $TMP/VAR.out; 1 if it did not get there
hold() {
	local var=$1 fifo=$TMP/$1.fifo fd pid
	shift
	rm -f "$fifo"
	mkfifo "$fifo" || return 1
	"$PVHC" --hold "$@" <"$fifo" >"$TMP/$var.out" 2>&1 &
	pid=$!
	# shellcheck disable=SC2034 # fd: its stdin stays open until this script ends
	exec {fd}>"$fifo"
	printf -v "$var" %s "$pid"
	for _ in $(seq 100); do
		grep -q '^ready' "$TMP/$var.out" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}
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

# ---- man pages: rendered without a warning, naming every command, option, parameter -------
# section TEXT NAME: the lines of section NAME of a rendered page
section() { sed -n "/^$2\$/,/^[A-Z]/p" "$1"; }
if ! command -v man >/dev/null || ! command -v groff >/dev/null; then
	nok "man and groff (man-db, groff-base: scripts/install-deps.sh)"
else
	for page in "$SRC/man/pviommuctl.8" "$SRC/man/pviommu.4"; do
		n=$(basename "$page")
		w=$(MANWIDTH=80 MANPAGER=cat man --warnings -l "$page" 2>&1 >/dev/null)
		assert "man --warnings -l $n: no warning${w:+ ($w)}" [ -z "$w" ]
		w=$(MANWIDTH=80 MANPAGER=cat man --warnings=w -l "$page" 2>&1 >/dev/null)
		assert "man --warnings=w (every groff warning) -l $n: none${w:+ ($w)}" [ -z "$w" ]
		# the text the checks below read: not hyphenated (-rHY=0), so that words stay whole
		MANROFFOPT=-rHY=0 MANWIDTH=80 MANPAGER=cat man -l "$page" >"$TMP/$n.txt" 2>/dev/null
		assert "$n: rendered" [ "$(wc -l <"$TMP/$n.txt")" -gt 50 ]
		assert "$n: the version of VERSION ($VER)" grep -q "^\.TH [A-Z]* [48] [0-9-]* \"pviommu $VER\"" "$page"
	done
	section "$TMP/pviommuctl.8.txt" COMMANDS >"$TMP/commands.txt"
	for c in $CMDS; do
		assert "pviommuctl(8) describes $c" grep -qE "^       $c( |\$)" "$TMP/commands.txt"
		[ "$c" = help ] && continue
		for o in $("$CTL" help "$c" 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u); do
			assert "pviommuctl(8): $c $o" grep -q -- "$o" "$TMP/commands.txt"
		done
	done
	for o in -j --json -v --verbose -V --version -h --help; do
		assert "pviommuctl(8) option $o" grep -qE -- "^       $o(,| |\$)|, $o\$" <(section "$TMP/pviommuctl.8.txt" OPTIONS)
	done
	assert "pviommuctl(8): the exit status 2 of README" grep -qE "^       2 +This host cannot run pviommu" <(section "$TMP/pviommuctl.8.txt" "EXIT STATUS")
	params=$(sed -n 's/^module_param(\([a-z_]*\),.*/\1/p' "$SRC/guest-module/pviommu.c")
	assert "guest-module/pviommu.c has module parameters (${params//$'\n'/ })" [ "$(wc -w <<<"$params")" -ge 8 ]
	section "$TMP/pviommu.4.txt" PARAMETERS >"$TMP/params.txt"
	for p in $params; do
		assert "pviommu(4) describes $p=" grep -qE "^       $p=" "$TMP/params.txt"
	done
	# the debugfs stats keys: every "key %" in the seq_printf()s of pviommu_stats_show()
	keys=$(sed -n '/^static int pviommu_stats_show/,/^}/p' "$SRC/guest-module/pviommu.c" |
		grep -o '"[^"]*"' | grep -oE '(^"|\\n| )[a-z_]+ %' | sed -E 's/^("|\\n| )//; s/ %$//' | sort -u)
	assert "pviommu_stats_show() has keys (${keys//$'\n'/ })" [ "$(wc -w <<<"$keys")" -ge 20 ]
	section "$TMP/pviommu.4.txt" DEBUGFS >"$TMP/debugfs.txt"
	for k in $keys; do
		assert "pviommu(4) describes the stats key $k" grep -qw -- "$k" "$TMP/debugfs.txt"
	done
fi

# ---- errors: one line, exit 1; JSON with -j before or after the command --------------------
fails "unknown command" 1 "$CTL" frobnicate
fails_json "unknown command, -j" 1 "$CTL" -j frobnicate
fails "unknown global option" 1 "$CTL" --frobnicate status
# one JSON writer: what an error quotes keeps its quote, backslash and tab (escaped, not replaced)
fails_json "an error quoting \" \\ and a tab, -j" 1 "$CTL" -j mode "$(printf 'de"n\\y\tx')"
jq_eq "... kept exactly in the JSON string" "$TMP/out" "'de'+chr(34)+'n'+chr(92)+'y'+chr(9)+'x' in j['error']" True
for c in $CMDS; do
	[ "$c" = help ] && continue
	fails "$c --frobnicate" 1 "$CTL" "$c" --frobnicate
	fails_json "$c --frobnicate -j" 1 "$CTL" "$c" --frobnicate -j
	fails_json "-j $c --frobnicate" 1 "$CTL" -j "$c" --frobnicate
done
# one option loop for every command (cmd_getopt): 'CMD help', 'CMD -h' and 'CMD --help' alike
for c in $CMDS; do
	[ "$c" = help ] && continue
	for h in help -h --help; do
		run "$CTL" "$c" "$h"
		assert "$c $h: its usage, exit 0 (exit $rc)" sh -c "[ $rc = 0 ] && grep -q '^Usage: pviommuctl' '$TMP/out'"
	done
done
fails "detach with both --pid and --qemu" 1 "$CTL" detach --pid 1 --qemu /usr/bin/qemu-system-x86_64
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
fails "stats --prometheus before load: exit 1" 1 "$CTL" stats --prometheus --output "$TMP/down.prom"
assert "... still writes pviommu_up 0 (a stale file would not say so)" grep -qx "pviommu_up 0" "$TMP/down.prom"
fails "stats --prometheus -j before load: Prometheus text, the error on stderr" 1 "$CTL" stats --prometheus -j
assert "... pviommu_up 0 on stdout" grep -qx "pviommu_up 0" "$TMP/out"
fails_json "stats -j before load: one object" 1 "$CTL" stats -j
jq_eq "... saying not loaded" "$TMP/out" 'j["loaded"]' False

# ---- loaded: -j and -v anywhere before '--' ------------------------------------------------
run "$CTL" load -j
assert "load -j" [ "$rc" = 0 ]
jq_eq "load -j: JSON" "$TMP/out" 'j["loaded"]' True
if hold HPID register -- dev-add 00:04.0 -- dev-add 00:05.0 -- \
	map 00:04.0 0x100000 0x3000 rw -- map 00:04.0 0x200010 100 w -- map 00:05.0 0x7000 64 r
then ok "a VM (pvhc holder) registered and mapped"
else nok "a VM (pvhc holder) registered and mapped" "$(cat "$TMP/HPID.out")"; fi

# ---- make install: where a package puts the files; the installed pviommuctl finds its library
inst=$TMP/inst
if make -C "$SRC" --no-print-directory O="$OUT" DESTDIR="$inst" install >"$TMP/inst.out" 2>&1
then ok "make install DESTDIR=..."; else nok "make install DESTDIR=..." "$(tail -n 3 "$TMP/inst.out")"; fi
for f in usr/sbin/pviommuctl usr/lib/pviommu/libpviommu-qemu.so usr/share/man/man8/pviommuctl.8 \
	usr/share/man/man4/pviommu.4 usr/share/bash-completion/completions/pviommuctl \
	lib/systemd/system/pviommu.service lib/systemd/system/pviommu-events.service \
	etc/libvirt/hooks/qemu.d/pviommu usr/share/pviommu/libvirt-domain-snippet.xml; do
	assert "installed /$f" [ -f "$inst/$f" ]
done
assert "installed units run the installed pviommuctl" grep -q '^ExecStart=/usr/sbin/pviommuctl load' \
	"$inst/lib/systemd/system/pviommu.service"
run "$inst/usr/sbin/pviommuctl" --version
assert "installed pviommuctl --version" [ "$rc" = 0 ]
# run, from the installed binary, preloads the installed library (PREFIX/lib/pviommu)
# shellcheck disable=SC2016
run "$inst/usr/sbin/pviommuctl" run -- sh -c 'echo "$LD_PRELOAD"'
assert "installed run preloads $inst/usr/lib/pviommu/libpviommu-qemu.so" \
	[ "$rc:$(cat "$TMP/out")" = "0:$(realpath "$inst/usr/lib/pviommu/libpviommu-qemu.so")" ]
rm -f "$inst/usr/lib/pviommu/libpviommu-qemu.so"
fails "installed run without its library: one Error line naming where it looked" 1 \
	"$inst/usr/sbin/pviommuctl" run -- /bin/true
assert "... naming where it looked" grep -q 'lib/pviommu' "$TMP/err"

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
fails "attach to a process that is not QEMU: one Error line" 1 "$CTL" attach --pid "$HPID"
fails "attach --enforce to a binary that is not QEMU: one Error line" 1 "$CTL" attach --qemu /bin/true --enforce
# the TCG transport on every process of a binary whose path has a quote: status -j and
# detach -j name it in valid JSON (the path is escaped, never pasted)
qdir="$TMP/q\"emu"
mkdir -p "$qdir" && cp "$(command -v qemu-system-x86_64)" "$qdir/qemu"
run "$CTL" attach --qemu "$qdir/qemu" -j
jq_eq "attach --qemu PATH-with-a-quote -j" "$TMP/out" 'j["attached"]' "$qdir/qemu"
run "$CTL" status -j
jq_eq "status -j lists the binary's TCG transport" "$TMP/out" "'$qdir/qemu' in j['programs']['tcg_cpuid']" True
run "$CTL" detach --qemu "$qdir/qemu" -j
jq_eq "detach --qemu PATH-with-a-quote -j" "$TMP/out" 'j["detached"]' "$qdir/qemu"
run "$CTL" status -j
jq_eq "... and status -j no longer lists it" "$TMP/out" "'$qdir/qemu' in j['programs']['tcg_cpuid']" False
rm -rf "$qdir"
fails "mode for a pid without a domain" 1 "$CTL" mode deny --pid 1
fails "vfio with a bad BDF" 1 "$CTL" vfio --pid "$HPID" zz

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

# ---- stats: text, JSON, Prometheus (node_exporter textfile) ---------------------------------
fails "'stat' is ambiguous now" 1 "$CTL" stat
assert "... naming both" grep -q "which command is 'stat'? status, stats" "$TMP/err"
# a VM whose QEMU runs the in-process plane, reserved with a name QEMU takes as it is
if [ -n "$QEMU" ]; then
	"$CTL" run --mode audit -- "$QEMU" -name 'guest=we"b\1,debug-threads=on' -machine none \
		-display none -nodefaults -monitor none -S </dev/null >"$TMP/qemu.out" 2>&1 &
	QPID=$!
	for _ in $(seq 100); do grep -q libpviommu-qemu.so "/proc/$QPID/maps" 2>/dev/null && break; sleep 0.1; done
	sleep 0.5	# past its constructor: the domain is reserved
fi
run "$CTL" stats -j
cp "$TMP/out" "$TMP/stats0.json"
# a second VM: one device, one page mapped rw, a transfer allowed and one denied by the
# check, two violations as the in-process plane reports them (denied, killed)
if hold H2PID register -- dev-add 00:06.0 -- map 00:06.0 0x10000 0x1000 rw -- \
	check 00:06.0 0x10000 64 r -- check 00:06.0 0x20000 64 w -- \
	report 00:06.0 0x30000 8 w denied -- report 00:06.0 0x30000 8 w killed
then ok "a second VM made its calls, checks and reports"
else nok "a second VM made its calls, checks and reports" "$(cat "$TMP/H2PID.out")"; fi
assert "... the check allowed the mapped read" grep -q "0x10000 64 r: allow" "$TMP/H2PID.out"
assert "... and denied the unmapped write" grep -q "0x20000 64 w: deny" "$TMP/H2PID.out"
"$PVHC" unmap 00:04.0 0x9000 64 >/dev/null 2>&1	# not registered: refused
run "$CTL" stats -j
cp "$TMP/out" "$TMP/stats1.json"
assert "stats -j" [ "$rc" = 0 ]
run "$CTL" stats
assert "stats: a line per VM" grep -qE "^  $HPID +- +registered +deny +2 +3 +12452 " "$TMP/out"
run "$CTL" stats --prometheus --output "$TMP/pviommu.prom"
assert "stats --prometheus --output FILE" [ "$rc" = 0 -a -s "$TMP/pviommu.prom" -a ! -e "$TMP/pviommu.prom.tmp" ]
run "$CTL" stats --prometheus
assert "stats --prometheus on stdout: the same families" \
	[ "$(grep -c '^# TYPE' "$TMP/out")" = "$(grep -c '^# TYPE' "$TMP/pviommu.prom")" ]
for py in /usr/bin/python3 python3; do "$py" -c 'import prometheus_client' 2>/dev/null && break; done
if ! "$py" -c 'import prometheus_client' 2>/dev/null; then
	nok "prometheus_client (python3-prometheus-client, scripts/install-deps.sh)"
else
	# the parser of Prometheus' own Python client reads the file; every value checked
	"$py" - "$TMP/pviommu.prom" "$TMP/stats0.json" "$TMP/stats1.json" "$HPID" "$H2PID" "${QPID:-0}" \
		>"$TMP/prom.res" 2>&1 <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
path, s0, s1, hpid, h2pid, qpid = sys.argv[1:]
fams = list(text_string_to_metric_families(open(path).read()))
val, lab = {}, {}
for f in fams:
    for s in f.samples:
        val[(s.name, s.labels.get("pid"), s.labels.get("resource"))] = s.value
        lab[(s.name, s.labels.get("pid"))] = s.labels
def check(name, got, want):
    print(("ok   " if got == want else "FAIL ") + "%s (got %r, want %r)" % (name, got, want))
def v(name, pid=None, res=None):
    return val.get((name, pid, res))
s0, s1 = json.load(open(s0))["stats"], json.load(open(s1))
check("prometheus: every family has HELP and a TYPE",
      [f.name for f in fams if not f.documentation or f.type == "unknown"], [])
check("prometheus: every name is pviommu_*", [f.name for f in fams if not f.name.startswith("pviommu_")], [])
names = [f.name for f in fams]
check("prometheus: no family twice", len(names), len(set(names)))
check("pviommu_up", v("pviommu_up"), 1.0)
d = lambda k: v("pviommu_%s_total" % k) - s0[k]
check("checks: +2", d("checks"), 2)
check("allowed: +1", d("allowed"), 1)
check("violations: +3 (one check, two reports)", d("violations"), 3)
check("denied: +1", d("denied"), 1)
check("killed: +1", d("killed"), 1)
check("refused hypercalls: +1", d("hypercall_errors"), 1)
check("maps: +1", d("maps"), 1)
check("every global counter equals stats -j",
      [k for k, x in s1["stats"].items() if v("pviommu_%s_total" % k) != x], [])
for pid, dev, maps, nbytes in ((hpid, 2, 3, 0x3000 + 100 + 64), (h2pid, 1, 1, 0x1000)):
    check("VM %s: devices" % pid, v("pviommu_vm_devices", pid), dev)
    check("VM %s: mappings" % pid, v("pviommu_vm_mappings", pid), maps)
    check("VM %s: mapped bytes" % pid, v("pviommu_vm_mapped_bytes", pid), nbytes)
    check("VM %s: registered, deny" % pid,
          (lab[("pviommu_vm_info", pid)]["state"], lab[("pviommu_vm_info", pid)]["mode"]),
          ("registered", "deny"))
    check("VM %s: not failed closed" % pid, v("pviommu_vm_failed_closed", pid), 0)
    check("VM %s: its record quota" % pid, v("pviommu_vm_quota", pid, "records"), 2048)
    check("VM %s: registered a moment ago" % pid,
          abs(v("pviommu_vm_registered_timestamp_seconds", pid) - __import__("time").time()) < 120, True)
if qpid != "0":
    check("the QEMU VM: reserved, audit, its -name (quote and backslash escaped)",
          {k: lab[("pviommu_vm_info", qpid)][k] for k in ("state", "mode", "name")},
          {"state": "reserved", "mode": "audit", "name": 'we"b\\1'})
check("pviommu_vms: one per domain", v("pviommu_vms"), len(s1["vms"]))
check("every VM of stats -j, with its mappings",
      sorted((str(x["pid"]), x["mappings"]) for x in s1["vms"]),
      sorted((p, v("pviommu_vm_mappings", p)) for (n, p, r) in val if n == "pviommu_vm_mappings"))
PY
	while read -r word rest; do
		case $word in ok) ok "$rest" ;; FAIL) nok "$rest" ;; *) nok "prometheus parser: $word $rest" ;; esac
	done <"$TMP/prom.res"
fi

# ---- bash completion: sourced, asked as bash asks it ---------------------------------------
COMPL=$SRC/scripts/pviommuctl.bash-completion
# shellcheck source=scripts/pviommuctl.bash-completion
. "$COMPL"
assert "the completion registers itself for pviommuctl" grep -q -- '-F _pviommuctl' <<<"$(complete -p pviommuctl 2>&1)"
# comp WORD...: what TAB offers for the last word, sorted, one line
comp() {
	COMP_WORDS=("$CTL" "$@")
	COMP_CWORD=$#
	COMP_LINE="${COMP_WORDS[*]}"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_pviommuctl 2>/dev/null
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
# compl_is NAME WANT WORD...: exactly WANT (sorted); compl_has NAME WANT WORD...: WANT among them
compl_is() {
	local n=$1 want=$2 got; shift 2
	got=$(comp "$@")
	if [ "$got" = "$want" ]; then ok "$n"; else nok "$n" "got '$got', want '$want'"; fi
}
compl_has() {
	local n=$1 want=$2 got w; shift 2
	got=" $(comp "$@") "
	for w in $want; do [[ $got == *" $w "* ]] || { nok "$n" "no '$w' in '$got'"; return; }; done
	ok "$n"
}
compl_is "completion: the commands of 'pviommuctl help'" "$(tr ' ' '\n' <<<"$CMDS" | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//')" ""
compl_is "completion: a prefix (st)" "stats status" st
compl_is "completion: after global options (-j ma)" "mappings" -j ma
compl_has "completion: global options" "-j --json -v --verbose -V --version -h --help" -
compl_is "completion: modes" "audit deny kill" mode ""
compl_is "completion: kvm-cpl" "auto entry none svm" load --kvm-cpl ""
compl_is "completion: run --mode" "audit deny kill" run --mode ""
compl_is "completion: help CMD by prefix" "events" help ev
compl_has "completion: every VM's pid for --pid (from -j status)" "$HPID $H2PID ${QPID:-}" mappings --pid ""
compl_has "... also after a command prefix (map --pid)" "$HPID" map --pid ""
compl_is "completion: the BDFs of the live mappings for --bdf" "0000:00:04.0 0000:00:05.0 0000:00:06.0" mappings --bdf ""
compl_is "completion: vfio --pid P: that VM's BDFs, and '-'" "- 0000:00:04.0 0000:00:05.0" vfio --pid "$HPID" ""
compl_is "completion: --quota keys, after a comma too" "records=4,devices= records=4,lanes= records=4,pages= records=4,records=" load --quota records=4,
[ -n "$QEMU" ] && compl_has "completion: run -- QEMU" "qemu-system-x86_64" run --mode audit -- qemu-system-x86_6
compl_is "completion: nothing after a value that wants a number" "" events --count ""
# every option the help of a command names is offered for it
for c in $CMDS; do
	[ "$c" = help ] && continue
	opts=$("$CTL" help "$c" | grep -o -- '--[a-z][a-z-]*' | sort -u | tr '\n' ' ')
	compl_has "completion: the options of $c (${opts% })" "$opts" "$c" --
done
# not root: no pid from pviommuctl, the running QEMUs instead
if [ -n "${QPID:-}" ]; then
	got=$(setpriv --reuid=65534 --regid=65534 --clear-groups bash -c \
		". '$COMPL'; COMP_WORDS=('$CTL' mappings --pid ''); COMP_CWORD=3; _pviommuctl; echo \"\${COMPREPLY[*]}\"")
	assert "completion, not root: the pids of running QEMUs ($QPID in: $got)" grep -qw "$QPID" <<<"$got"
fi

# ---- events --follow -j: JSON lines across unload and load ----------------------------------
for p in $HPID $H2PID $QPID; do kill "$p" 2>/dev/null; done
for p in $HPID $H2PID $QPID; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
HPID='' H2PID='' QPID=''
sleep 0.3	# their domains are purged at exit
run "$CTL" unload
assert "unload once the VMs are gone" [ "$rc" = 0 ]
fails "events before load: exit 1" 1 "$CTL" events --timeout 1
"$CTL" events --follow -j >"$TMP/ev.json" 2>"$TMP/ev.err" &
evpid=$!
sleep 0.5
"$CTL" load >/dev/null 2>&1
# wait_notes N: until the follower said N times that it follows a ring (10 s at most)
wait_notes() {
	for _ in $(seq 100); do
		[ "$(grep -cE 'following (its events|the new one)' "$TMP/ev.err")" -ge "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
assert "events --follow found the ring of a load it waited for" wait_notes 1
"$PVHC" unmap 00:04.0 0x9000 64 >/dev/null 2>&1	# refused: an event
"$PVHC" report 00:04.0 0x30000 8 w denied >/dev/null 2>&1	# a violation, as QEMU reports it
sleep 0.5
"$CTL" unload >/dev/null 2>&1
"$CTL" load >/dev/null 2>&1	# a new ring
assert "... and the new ring of the next load" wait_notes 2
"$PVHC" unmap 00:04.0 0xa000 64 >/dev/null 2>&1
sleep 0.5
kill -TERM "$evpid"
wait "$evpid"
rc=$?
assert "events --follow exits 0 on SIGTERM" [ "$rc" = 0 ]
"$py" - "$TMP/ev.json" >"$TMP/ev.res" 2>&1 <<'PY'
import json, sys, datetime, time
lines = open(sys.argv[1]).read().splitlines()
def check(name, got, want):
    print(("ok   " if got == want else "FAIL ") + "%s (got %r, want %r)" % (name, got, want))
ev = []
for l in lines:
    try:
        ev.append(json.loads(l))
    except ValueError:
        ev.append({"unparsed": l})
check("events --follow -j: every line one JSON object", [e for e in ev if "unparsed" in e], [])
got = [(e.get("type"), e.get("op"), e.get("addr"), e.get("action")) for e in ev]
check("... the refused UNMAP, the reported violation, and the UNMAP after unload and load",
      got, [("hypercall-error", "unmap", 0x9000, "-"), ("violation", "-", 0x30000, "denied"),
            ("hypercall-error", "unmap", 0xa000, "-")])
def age(e):
    t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return time.time() - t.timestamp()
check("... each with its wall-clock time (RFC 3339, UTC, within the last minute)",
      [0 <= age(e) < 60 for e in ev if "time" in e], [True] * len(ev))
PY
while read -r word rest; do
	case $word in ok) ok "$rest" ;; FAIL) nok "$rest" ;; *) nok "events: $word $rest" ;; esac
done <"$TMP/ev.res"
assert "... and said on stderr what it waited for" grep -q "waiting for 'pviommuctl load'" "$TMP/ev.err"
assert "... nothing else on stderr" [ "$(grep -vc '^note: ' "$TMP/ev.err")" = 0 ]

# ---- the systemd units: systemd-analyze verify, and what they run, run --------------------
UNITS=$SRC/packaging/systemd
if ! command -v systemd-analyze >/dev/null; then
	skip "systemd units" "systemd-analyze not found (Debian: package systemd): units not verified"
else
	# the units as shipped, pointed at this build; their man: links at these man pages
	mkdir -p "$TMP/units" "$TMP/man/man8" "$TMP/man/man4"
	cp "$SRC/man/pviommuctl.8" "$TMP/man/man8/"
	cp "$SRC/man/pviommu.4" "$TMP/man/man4/"
	for u in pviommu.service pviommu-events.service; do
		bad=$(grep '^Exec' "$UNITS/$u" | grep -v '^Exec[A-Za-z]*=/usr/sbin/pviommuctl ')
		assert "$u runs /usr/sbin/pviommuctl${bad:+ (not: $bad)}" [ -z "$bad" ]
		sed "s|/usr/sbin/pviommuctl|$CTL|g" "$UNITS/$u" >"$TMP/units/$u"
	done
	out=$(MANPATH=$TMP/man systemd-analyze verify "$TMP/units/pviommu.service" \
		"$TMP/units/pviommu-events.service" 2>&1)
	rc=$?
	assert "systemd-analyze verify: clean (exit $rc${out:+: $out})" [ "$rc" = 0 -a -z "$out" ]
	assert "pviommu.service: Type=oneshot" grep -qx 'Type=oneshot' "$UNITS/pviommu.service"
	assert "pviommu.service: RemainAfterExit=yes" grep -qx 'RemainAfterExit=yes' "$UNITS/pviommu.service"
	# its commands as systemd runs them (no /etc/default/pviommu: PVIOMMU_LOAD_OPTS empty)
	unit() { # unit KEY: pviommu.service's KEY= command, run; exit status in $rc
		local cmd
		cmd=$(sed -n "s/^$1=//p" "$TMP/units/pviommu.service" | sed 's/\$PVIOMMU_LOAD_OPTS//')
		# shellcheck disable=SC2086
		run $cmd
		return "$rc"
	}
	"$CTL" unload --force >/dev/null 2>&1
	unit ExecStart
	assert "ExecStart loads (exit $rc)" [ "$rc" = 0 ]
	assert "... generation 1" grep -q "generation 1" "$TMP/out"
	hold HPID register -- dev-add 00:04.0 -- map 00:04.0 0x100000 0x1000 rw ||
		nok "a VM for the unit" "$(cat "$TMP/HPID.out")"
	unit ExecReload
	assert "ExecReload reloads (exit $rc)" [ "$rc" = 0 ]
	assert "... generation 2" grep -q "generation 2" "$TMP/out"
	run "$CTL" -j mappings --pid "$HPID"
	jq_eq "... and the VM's mapping stays" "$TMP/out" 'len(j)' 1
	fails "ExecStop while a protected VM runs: refused, exit 1" 1 unit ExecStop
	assert "... naming its QEMU pid" grep -q "QEMU pids\\? [0-9 ]*$HPID" "$TMP/err"
	run "$CTL" -j mappings --pid "$HPID"
	jq_eq "... and the policy stays loaded and enforcing" "$TMP/out" 'len(j)' 1
	kill "$HPID"
	while kill -0 "$HPID" 2>/dev/null; do sleep 0.1; done
	HPID=
	sleep 0.3
	unit ExecStop
	assert "ExecStop once the VM is gone: unloaded (exit $rc)" [ "$rc" = 0 ]
	assert "... no pin left" [ ! -e "$PVIOMMU_PIN_DIR" ]
fi

finish
