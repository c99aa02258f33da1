#!/usr/bin/env python3
"""ksyms.py KALLSYMS MODULES KTEXT KMODS < TEXT: names the kernel and module addresses in TEXT
(hex words ffffffff........) as symbol+offset, for an L1 whose kernel lies at KTEXT (its
_text) and its modules at KMODS ("name:address,..." from its /proc/modules). KALLSYMS and
MODULES: /proc/kallsyms and /proc/modules of another boot of the same kernel with the same
modules (tests/l1/lib.sh l1_kallsyms): KASLR moves the kernel and each module whole, so an
offset from _text, or from a module's base, names the same code in both boots."""
import bisect
import re
import sys


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    kallsyms, modules, ktext, kmods = sys.argv[1:]
    bases = {}  # module -> base in the boot of KALLSYMS
    for line in open(modules):
        f = line.split()
        if len(f) >= 6:
            bases[f[0]] = int(f[5], 16)
    text = None
    kern, mods = [], {}
    for line in open(kallsyms):
        f = line.split()
        if len(f) < 3 or f[1] not in "tTwW":
            continue
        a = int(f[0], 16)
        if len(f) == 3:
            kern.append((a, f[2]))
            if f[2] == "_text":
                text = a
        elif f[3].startswith("[") and f[3][1:-1] in bases:
            m = f[3][1:-1]
            mods.setdefault(m, []).append((a - bases[m], f[2]))
    if text is None:
        sys.exit("ksyms: no _text in " + kallsyms)
    kern = sorted((a - text, n) for a, n in kern)
    for m in mods:
        mods[m].sort()
    l1text = int(ktext, 16)
    l1mods = []  # (base, name) of L1's modules
    for item in filter(None, kmods.split(",")):
        n, _, a = item.partition(":")
        if n in mods:
            l1mods.append((int(a, 16), n))
    l1mods.sort()

    def name(tab, off, prefix=""):
        i = bisect.bisect_right([o for o, _ in tab], off) - 1
        if i < 0 or off - tab[i][0] > 0x10000:
            return None
        return "%s%s+0x%x" % (prefix, tab[i][1], off - tab[i][0])

    def sym(mo):
        a = int(mo.group(0), 16)
        s = None
        i = bisect.bisect_right([b for b, _ in l1mods], a) - 1
        if i >= 0:
            s = name(mods[l1mods[i][1]], a - l1mods[i][0], "[%s]" % l1mods[i][1])
        if s is None and a >= l1text:
            s = name(kern, a - l1text)
        return s or mo.group(0)

    for line in sys.stdin:
        sys.stdout.write(re.sub(r"\bffffffff[0-9a-f]{8}\b", sym, line))


main()
