# Opens N connections to DST port 80 round-robin over the source addresses SRCS, each
# sending one `GET /bytes/1` and reading its whole response, with up to 64 in progress;
# prints `open N failed F secs S` once all are answered and open, then waits for SIGUSR1
# (or 900 s), closes them all (250 per 50 ms) and prints `closed N`.
#
# Usage: python3 conns_client.py N SRC[,SRC...] DST
# Used by tests/veth_100k_conns.rs and `cargo xtask bench --only conns100k`.
import errno, resource, select, signal, socket, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
n = int(sys.argv[1]); srcs = sys.argv[2].split(","); dst = (sys.argv[3], 80)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
REQ = b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n"
ep = select.epoll()
state = {}   # fd -> [sock, phase, got]
done = []; started = 0; t0 = time.time(); failed = 0
def start():
    global started
    s = socket.socket()
    s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: port chosen by connect
    s.bind((srcs[started % len(srcs)], 0))
    s.setblocking(False)
    try:
        s.connect(dst)
    except BlockingIOError:
        pass
    state[s.fileno()] = [s, 0, b""]
    ep.register(s.fileno(), select.EPOLLOUT)
    started += 1
while len(done) + failed < n:
    while started < n and len(state) < 64:
        start()
    for fd, ev in ep.poll(10):
        s, phase, got = state[fd]
        if phase == 0:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                print("connect failed", errno.errorcode.get(err, err), flush=True)
                ep.unregister(fd); del state[fd]; s.close(); failed += 1
                continue
            s.send(REQ)
            state[fd][1] = 1
            ep.modify(fd, select.EPOLLIN)
        else:
            data = s.recv(4096)
            got += data
            state[fd][2] = got
            head, sep, body = got.partition(b"\r\n\r\n")
            if not data or (sep and len(body) >= 1):
                ep.unregister(fd); del state[fd]
                if got.startswith(b"HTTP/1.1 200") and body == b"\x00":
                    done.append(s)
                else:
                    print("bad answer", got[:200], flush=True); s.close(); failed += 1
    if time.time() - t0 > 900:
        break
print("open", len(done), "failed", failed, "secs %.1f" % (time.time() - t0), flush=True)
signal.sigtimedwait([signal.SIGUSR1], 900)
# Closed 250 at a time, 5,000 a second: a burst of 100k FINs would overflow the stack's
# receive ring (a debug build drains it slowest), and a connection whose FIN and then
# RST (Linux resets orphans whose FIN it had to resend while it holds many) are both lost
# stays open on the server until its idle timeout.
for i, s in enumerate(done):
    s.close()
    if i % 250 == 249:
        time.sleep(0.05)
print("closed", len(done), flush=True)
time.sleep(600)
