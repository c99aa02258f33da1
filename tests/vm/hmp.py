#!/usr/bin/env python3
"""hmp.py SOCKET CMD...: run QEMU human-monitor commands on a unix socket (-monitor
unix:SOCKET,server=on,wait=off), print "== CMD" and what it answered, for each in order. A QEMU that does not
answer within 5 s per command (itself stuck, or stopped) ends it with exit 1."""
import socket
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(sys.argv[1])
        buf = b""
        while not buf.rstrip().endswith(b"(qemu)"):  # the banner and the first prompt
            b = s.recv(65536)
            if not b:
                sys.exit("hmp: the monitor closed")
            buf += b
        for cmd in sys.argv[2:]:
            s.sendall(cmd.encode() + b"\n")
            buf = b""
            while not buf.rstrip().endswith(b"(qemu)"):
                b = s.recv(65536)
                if not b:
                    break
                buf += b
            out = buf.decode("latin-1").replace("\r", "")
            # the echo of the command line comes first, the next prompt last
            lines = out.split("\n")[1:]
            if lines and lines[-1].strip() == "(qemu)":
                lines = lines[:-1]
            print("== " + cmd)
            for line in lines:
                if line and not line.startswith("\x1b"):
                    print(line)
    except (OSError, socket.timeout) as e:
        sys.exit("hmp: %s: %s" % (sys.argv[1], e))


main()
