# tcp-server.py [BLOB] - the host end of the guests' TCP workloads (tests/vm/lib.sh
# vm_tcp_server). Listens on 127.0.0.1 (guests reach it as 10.0.2.2), prints its port.
#   "GET n\n"            -> n bytes of BLOB, repeated as needed (default: bytes 0..255)
#   "PUT n\n" + n bytes  -> "OK n md5\n"
import hashlib, socket, sys, threading
blob = open(sys.argv[1], 'rb').read() if len(sys.argv) > 1 else bytes(range(256)) * (1 << 14)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        f = c.makefile('rb')
        w = f.readline().split()
        n = int(w[1])
        if w[0] == b'GET':
            mv = memoryview(blob)
            while n > 0:
                k = min(n, len(blob))
                c.sendall(mv[:k])
                n -= k
        elif w[0] == b'PUT':
            h, got = hashlib.md5(), 0
            while got < n:
                b = f.read1(min(65536, n - got))
                if not b:
                    break
                h.update(b); got += len(b)
            c.sendall(b'OK %d %s\n' % (got, h.hexdigest().encode()))
        c.shutdown(socket.SHUT_WR)
    except Exception as e:
        print('server:', e, file=sys.stderr, flush=True)
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
