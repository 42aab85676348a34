#!/usr/bin/env python3
"""What a connection costs the server in memory, measured from outside.

One `flashsale serve` (engine path) and a real redis-server (crowd.Topology). The script opens --connections
keep-alive connections to it, then reads the server's resident memory (VmRSS from /proc/PID/status) after each
step:

1. the connections are open and idle (accepted, nothing sent);
2. each connection has had one `GET /healthz` answered;
3. each connection has had one order answered (`POST /sales/{id}/orders`, every connection a different
   customer, so every order is a 201 that went through the ledger);
4. the same orders again (replays, answered from the ledger: memory should not grow further);
5. an order from a new customer on each connection (what the customers cost, not the connections);
6. every connection is closed (what the allocator keeps for the next crowd);
7. on a fresh server (the first one's allocator keeps what its connections freed), as many live sockets
   (`GET /sales/{id}/live`, the WebSocket each open sale page holds), each a different viewer, the stock
   frame read on each; then they are closed.

Each step reports the growth over the step before and per connection. The per-connection figures are what
FLASHSALE_MAX_CONNECTIONS and the pod's memory limit are sized with (docs/deploying.md, "Connections and memory").

    python scripts/conn_memory.py --bin .build/release/flashsale --connections 5000
"""
import argparse
import base64
import contextlib
import json
import os
import resource
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crowd  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def receive(sock, deadline, what):
    """The next bytes from `sock` before `deadline`; the server closing it is an error naming `what`."""
    sock.settimeout(max(0.1, deadline - time.time()))
    chunk = sock.recv(65536)
    if not chunk:
        raise RuntimeError("the server closed a connection mid-%s" % what)
    return chunk


def read_head(sock, deadline):
    """An HTTP/1.1 answer's head, and the bytes received after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive(sock, deadline, "head")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_answer(sock, deadline):
    """One HTTP/1.1 answer (Content-Length bodies only, as the server sends): its status."""
    head, body = read_head(sock, deadline)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        body += receive(sock, deadline, "body")
    return int(head.split(b" ", 2)[1])


def read_upgrade_and_frame(sock, deadline):
    """The 101 answer to a WebSocket handshake, then the first (unmasked, server-sent) frame: True if both came."""
    head, rest = read_head(sock, deadline)
    if not head.startswith(b"HTTP/1.1 101"):
        return False
    while True:
        if len(rest) >= 2:
            length, offset = rest[1] & 0x7F, 2
            if length == 126 and len(rest) >= 4:
                length, offset = int.from_bytes(rest[2:4], "big"), 4
            if length < 127 and len(rest) >= offset + length:
                return True
        rest += receive(sock, deadline, "frame")


def round_trip(socks, requests, timeout):
    """Send each connection its request, then read every answer: the statuses by count."""
    for sock, request in zip(socks, requests):
        sock.sendall(request)
    deadline = time.time() + timeout
    statuses = {}
    for sock in socks:
        status = read_answer(sock, deadline)
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def settle(pid, seconds=1.5):
    time.sleep(seconds)
    return rss_kib(pid)


@contextlib.contextmanager
def fresh_server(args):
    """One engine instance and its redis-server, an open sale, and the sockets the caller opens: all stopped
    and closed on the way out, whatever happened."""
    procs = crowd.Processes()
    workdir = tempfile.mkdtemp(prefix="conn-memory-")
    socks = []
    try:
        topology = crowd.Topology(procs, os.path.abspath(args.bin), workdir, 1, "engine")
        admin = crowd.token("memory-admin", admin=True)
        sale_id = "memory-%s" % os.urandom(3).hex()
        starts_ms = int(time.time() * 1000) + 1000
        status, body = crowd.request(topology.port, "POST", "/admin/sales", bearer=admin, body={
            "id": sale_id, "name": "memory", "stock": 4 * args.connections, "startsAt": crowd.rfc3339_ms(starts_ms),
            "durationSeconds": 600, "perCustomerLimit": 2})
        if status != 201:
            raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))
        time.sleep(max(0.0, starts_ms / 1000 - time.time()) + 0.2)
        yield topology.port, topology.instances[0].pid, sale_id, socks
    finally:
        for sock in socks:
            sock.close()
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def close_all(socks):
    for sock in socks:
        sock.close()
    del socks[:]


def order_request(sale_id, customer):
    """An order as clients send it (API.md): with an Idempotency-Key, which takes the engine's keyed path."""
    body = crowd.BODY.encode()
    return ("POST /sales/%s/orders HTTP/1.1\r\nHost: memory\r\nAuthorization: Bearer %s\r\n"
            "Idempotency-Key: memory-%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (sale_id, crowd.token(customer), os.urandom(6).hex(), len(body))).encode() + body


def measure_connections(args):
    steps = []
    with fresh_server(args) as (port, pid, sale_id, socks):
        steps.append(("started (readiness probes only)", settle(pid, 0.5), None))
        for _ in range(args.connections):
            socks.append(socket.create_connection(("127.0.0.1", port)))
        steps.append(("%d connections open, idle" % args.connections, settle(pid), None))
        healthz = b"GET /healthz HTTP/1.1\r\nHost: memory\r\n\r\n"
        statuses = round_trip(socks, [healthz] * len(socks), args.timeout)
        steps.append(("after one GET /healthz on each", settle(pid), statuses))
        orders = [order_request(sale_id, crowd.customer_name(index)) for index in range(len(socks))]
        statuses = round_trip(socks, orders, args.timeout)
        steps.append(("after one order on each (a different customer each)", settle(pid), statuses))
        statuses = round_trip(socks, orders, args.timeout)
        steps.append(("after the same orders again (replays: the same Idempotency-Key)", settle(pid), statuses))
        others = [order_request(sale_id, crowd.customer_name(len(socks) + index)) for index in range(len(socks))]
        statuses = round_trip(socks, others, args.timeout)
        steps.append(("after an order of a new customer on each (customers' state, not connections')",
                      settle(pid), statuses))
        close_all(socks)
        steps.append(("all connections closed", settle(pid, 3.0), None))
    return steps


def measure_live(args):
    """A fresh server (the first one's allocator keeps the freed memory of its connections, which live sockets
    would reuse): as many live sockets as connections, each a different viewer, the stock frame read on each."""
    steps = []
    with fresh_server(args) as (port, pid, sale_id, socks):
        steps.append(("a fresh server, started", settle(pid, 0.5), None))
        for index in range(args.connections):
            sock = socket.create_connection(("127.0.0.1", port))
            socks.append(sock)
            sock.sendall(("GET /sales/%s/live HTTP/1.1\r\nHost: memory\r\nUpgrade: websocket\r\n"
                          "Sec-WebSocket-Protocol: flashsale.live.v1, bearer.%s\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n"
                          % (sale_id, crowd.token("viewer-%d" % index), base64.b64encode(os.urandom(16)).decode())).encode())
        deadline = time.time() + args.timeout
        upgraded = sum(1 for sock in socks if read_upgrade_and_frame(sock, deadline))
        steps.append(("%d live sockets open (the stock frame read on each)" % args.connections, settle(pid), {101: upgraded}))
        close_all(socks)
        steps.append(("live sockets closed", settle(pid, 3.0), None))
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default=".build/release/flashsale")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on each step's answers (seconds)")
    parser.add_argument("--report", help="also write the figures as JSON here")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.connections + 64 > hard:
        parser.error("--connections %d needs more open files than the hard limit %d" % (args.connections, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    steps = measure_connections(args) + measure_live(args)

    print("server resident memory (VmRSS) after each step, %d connections:" % args.connections)
    print("| step | RSS MiB | growth MiB | growth per connection KiB | answers |")
    print("|---|---|---|---|---|")
    previous = None
    for name, rss, statuses in steps:
        if name.startswith("a fresh server"):
            previous = None
        growth = "" if previous is None else "%.1f" % ((rss - previous) / 1024)
        per = "" if previous is None else "%.1f" % ((rss - previous) / args.connections)
        answers = "" if statuses is None else ", ".join("%d x%d" % (s, n) for s, n in sorted(statuses.items()))
        print("| %s | %.1f | %s | %s | %s |" % (name, rss / 1024, growth, per, answers))
        previous = rss
    served = steps[4][1] - steps[0][1]
    live_socket = (steps[8][1] - steps[7][1]) / args.connections
    print("per live socket: %.1f KiB (on a fresh server)" % live_socket)
    print("per connection that has served orders: %.1f KiB (after the replays, over the start)" % (served / args.connections))
    if args.report:
        with open(args.report, "w") as handle:
            json.dump({"connections": args.connections, "bin": args.bin,
                       "steps": [{"step": n, "rssKiB": r, "answers": s} for n, r, s in steps],
                       "perConnectionKiB": served / args.connections, "perLiveSocketKiB": live_socket}, handle, indent=2)
    failed = [s for _, _, s in steps if s and any(code >= 500 or (code == 101 and n < args.connections) for code, n in s.items())]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
