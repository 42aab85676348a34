#!/usr/bin/env python3
"""The front's three measured findings, replayed from outside against one or more `flashsale serve` binaries
side by side (release builds of two commits, say), each on its own redis-server and loopback port:

1. shared-bucket: behind one haproxy (`option forwardfor`), client A (127.0.0.2) bursts 30 requests, then
   client B (127.0.0.3) sends 5: how many of B's answer 429 (address limit 5/s, bursts of 10). The binary runs
   with FLASHSALE_TRUSTED_PROXIES=127.0.0.1/32 (a binary that does not know the setting ignores it).
2. made-up-sales: 40,000 orders for 40,000 made-up sale ids, each with a 65-byte Idempotency-Key (400 each),
   through 8 keep-alive connections: the server's RSS before, after, and 5 s later.
3. tls-over-cap: TLS on, FLASHSALE_MAX_CONNECTIONS=50; 50 silent connections fill the cap, 40 more silent ones
   go beyond it: how many of the 40 the server closed within 12 s.

Usage: .venv/bin/python scripts/front_review.py --bin old=/tmp/fs-old/flashsale --bin new=.build/release/flashsale

Everything listens on 127.0.0.0/8 and is stopped at the end; every wait is bounded (the whole run takes about
a minute per binary).
"""

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "chaos"))

from flashsale_chaos import JWT_SECRET  # noqa: E402
from flashsale_chaos.clients import free_port, token, wait_until  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Server:
    """redis-server + `flashsale serve` on free loopback ports; stopped by close()."""

    def __init__(self, binary, workdir, env_extra=None):
        self.redis_port, self.port = free_port(), free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        env.update({"FLASHSALE_JWT_SECRET": JWT_SECRET, "FLASHSALE_SHUTDOWN_DELAY_SECONDS": "0", "FLASHSALE_LOG_LEVEL": "error", "FLASHSALE_RATE_LIMIT_CUSTOMER": "0",
                    "FLASHSALE_RATE_LIMIT_ADDRESS": "0", "FLASHSALE_DATA_KEY": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="})
        env.update(env_extra or {})
        self.process = subprocess.Popen([binary, "serve", "--port", str(self.port), "--redis-url",
                                         "redis://127.0.0.1:%d" % self.redis_port, "--instance-id", "front-review"],
                                        env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "serve.log"), "w"))
        if not wait_until(lambda: self.ready(), 30, 0.2):
            self.close()
            raise RuntimeError("the server did not become ready (see %s/serve.log)" % workdir)

    def ready(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def close(self):
        for child in (self.process, self.redis):
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def status(port, path, headers, source=None, tls=None):
    """One request on its own connection from `source`; the status code (0 when closed unanswered)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0) if source else None)
    try:
        request = "GET %s HTTP/1.1\r\nHost: shop\r\n%sConnection: close\r\n\r\n" % (path, "".join("%s: %s\r\n" % h for h in headers.items()))
        sock.sendall(request.encode())
        data = sock.recv(64)
        return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    except OSError:
        return 0
    finally:
        sock.close()


def shared_bucket(binary, workdir):
    server = Server(binary, workdir, {"FLASHSALE_RATE_LIMIT_ADDRESS": "5", "FLASHSALE_TRUSTED_PROXIES": "127.0.0.1/32"})
    front = free_port()
    config = os.path.join(workdir, "haproxy.cfg")
    with open(config, "w") as handle:
        handle.write("defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n"
                     "frontend f\n  bind 127.0.0.1:%d\n  option forwardfor\n  default_backend b\n"
                     "backend b\n  server s 127.0.0.1:%d\n" % (front, server.port))
    proxy = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: status(front, "/healthz", {}) == 200, 10, 0.1)
        bearer = {"Authorization": "Bearer " + token("shopper")}
        burst = [status(front, "/sales/none", bearer, source="127.0.0.2") for _ in range(30)]
        second = [status(front, "/sales/none", bearer, source="127.0.0.3") for _ in range(5)]
        return "A's burst: %d of 30 answered 429; then B: %d of 5 answered 429" % (burst.count(429), second.count(429))
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        server.close()


def made_up_sales(binary, workdir, count=40_000, connections=8):
    server = Server(binary, workdir)
    try:
        bearer = token("prober")
        key = "k" * 65
        time.sleep(1)
        before = rss_kib(server.process.pid)
        statuses = {}
        lock = threading.Lock()

        def worker(offset):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            local = {}
            for index in range(offset, count, connections):
                connection.request("POST", "/sales/made-up-%06d/orders" % index, body=b'{"quantity":1}',
                                   headers={"Authorization": "Bearer " + bearer, "Idempotency-Key": key, "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                local[response.status] = local.get(response.status, 0) + 1
            connection.close()
            with lock:
                for code, seen in local.items():
                    statuses[code] = statuses.get(code, 0) + seen

        started = time.time()
        threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        seconds = time.time() - started
        after = rss_kib(server.process.pid)
        time.sleep(5)
        settled = rss_kib(server.process.pid)
        return ("%d requests in %.1f s (%s); RSS %.1f MB before, %.1f MB after (+%.1f MB), %.1f MB 5 s later"
                % (count, seconds, statuses, before / 1024, after / 1024, (after - before) / 1024, settled / 1024))
    finally:
        server.close()


def tls_over_cap(binary, workdir, cap=50, beyond=40):
    certificate, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", certificate, "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=30)
    server = Server(binary, workdir, {"FLASHSALE_TLS_CERT_FILE": certificate, "FLASHSALE_TLS_KEY_FILE": key,
                                      "FLASHSALE_MAX_CONNECTIONS": str(cap)})
    held = []
    try:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(cap)]
        time.sleep(0.5)
        extra = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(beyond)]
        started = time.time()
        closed_at = {}
        while time.time() - started < 12 and len(closed_at) < beyond:
            for index, sock in enumerate(extra):
                if index in closed_at:
                    continue
                sock.setblocking(False)
                try:
                    if sock.recv(4096) == b"":
                        closed_at[index] = time.time() - started
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[index] = time.time() - started
            time.sleep(0.05)
        for sock in held + extra:
            sock.close()
        slowest = max(closed_at.values()) if closed_at else None
        return "%d of %d silent connections beyond the cap closed within 12 s%s" % (
            len(closed_at), beyond, "" if slowest is None else " (the last after %.1f s)" % slowest)
    finally:
        server.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", action="append", required=True, help="name=path of a flashsale binary (repeatable)")
    args = parser.parse_args()
    for entry in args.bin:
        name, _, path = entry.partition("=")
        for check in (shared_bucket, made_up_sales, tls_over_cap):
            with tempfile.TemporaryDirectory(prefix="front-review-") as workdir:
                print("%-5s %-14s %s" % (name, check.__name__.replace("_", "-"), check(os.path.abspath(path), workdir)), flush=True)


if __name__ == "__main__":
    main()
