"""`flashsale serve` following the Sentinels (ACL users and passwords as in production), and a client that
keeps ordering through it, remembering every acknowledged order."""

import base64
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time

from . import Failure
from .chaos_path import clients
from .pods import generated_literals

BODY = {"quantity": 1, "delivery": {"name": "Ada Lovelace", "phone": "5550100", "address": "1 Sentinel Street"}}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    def __init__(self, binary, work, cluster):
        self.binary, self.port, self.jwt = os.path.abspath(binary), free_port(), secrets.token_hex(32)
        self.log, self.proc = os.path.join(work, "logs", "flashsale-serve.log"), None
        # The Sentinels, master name and replica acks the component gives the Deployment (flashsale-config).
        config = {k: v for k, v in generated_literals("flashsale-config").items() if k.startswith("FLASHSALE_REDIS_")}
        self.env = dict(config, PATH=os.environ.get("PATH", "/usr/bin:/bin"), FLASHSALE_REDIS_REPLICA_ACKS="1",
                        FLASHSALE_REDIS_USERNAME="flashsale",
                        FLASHSALE_REDIS_PASSWORD=cluster.passwords["REDIS_SERVICE_PASSWORD"],
                        FLASHSALE_REDIS_SENTINEL_PASSWORD=cluster.passwords["REDIS_SENTINEL_AUTH_PASSWORD"],
                        FLASHSALE_JWT_SECRET=self.jwt, FLASHSALE_SHUTDOWN_DELAY_SECONDS="0", FLASHSALE_DATA_KEY=base64.b64encode(os.urandom(32)).decode(),
                        FLASHSALE_HOST="127.0.0.1", FLASHSALE_PORT=str(self.port), FLASHSALE_INSTANCE_ID="redis-ha-check")

    def start(self):
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("flashsale serve exited with %s" % self.proc.returncode)
            try:
                if self.request("GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise Failure("flashsale serve was not ready (GET /readyz 200) within 90 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def token(self, subject, admin=False):
        done = subprocess.run([self.binary, "token", "--sub", subject] + (["--admin"] if admin else []),
                              env={"FLASHSALE_JWT_SECRET": self.jwt}, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise Failure("flashsale token --sub %s: %s" % (subject, done.stderr.strip()))
        return done.stdout.strip()

    def request(self, method, path, body=None, bearer=None, headers=None, timeout=5.0):
        """One request on a fresh connection: (status, decoded JSON or text). Raises OSError/HTTPException."""
        return clients.request(self.port, method, path, body=body, bearer=bearer, headers=headers, timeout=timeout)

    def tail(self, lines=15):
        with open(self.log, errors="replace") as f:
            return "".join("    serve| %s\n" % line for line in f.read().splitlines()[-lines:])


class Client:
    """`workers` threads ordering `rate` orders/s in all, customers in turn. Each order is one intent with its own
    Idempotency-Key, retried under that key on 503/429/network errors (backoff up to 1 s) for at most
    `intent_seconds`. Every acknowledged order (201) is kept: (answered at, orderId, key, customer)."""

    def __init__(self, service, sale, customers, limit, rate=30, workers=4, intent_seconds=30):
        self.service, self.sale, self.customers = service, sale, customers  # customers: [(name, token)]
        self.capacity = limit * len(customers)  # orders before a customer could reach the sale's limit
        self.interval, self.workers, self.intent_seconds = 1.0 / rate, workers, intent_seconds
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.next_send, self.sent = time.monotonic(), 0
        self.acks, self.unexpected, self.unresolved, self.retries = [], [], 0, 0
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.intent_seconds + 10)

    def _next(self):
        with self.lock:
            number, self.sent = self.sent, self.sent + 1
            due = self.next_send = max(self.next_send + self.interval, time.monotonic() - 1)
        time.sleep(max(0.0, due - time.monotonic()))
        return number

    def _work(self):
        while not self.stopping.is_set():
            number = self._next()
            if number >= self.capacity:
                return
            name, bearer = self.customers[number % len(self.customers)]
            key = "ha-%s-%d" % (self.sale, number)
            deadline, attempt = time.monotonic() + self.intent_seconds, 0
            while time.monotonic() < deadline:
                try:
                    status, reply = self.service.request("POST", "/sales/%s/orders" % self.sale, BODY, bearer,
                                                         {"Idempotency-Key": key}, timeout=5)
                except (OSError, http.client.HTTPException):
                    status, reply = None, None
                if status in (200, 201) and isinstance(reply, dict) and reply.get("orderId"):
                    with self.lock:
                        self.acks.append((time.monotonic(), reply["orderId"], key, name))
                    break
                if status not in (None, 429, 503):
                    with self.lock:
                        self.unexpected.append("%s %s" % (status, reply))
                    break
                attempt += 1
                with self.lock:
                    self.retries += 1
                time.sleep(min(0.1 * attempt, 1.0))
            else:
                with self.lock:
                    self.unresolved += 1

    def acked_since(self, moment):
        with self.lock:
            return sum(1 for at, *_ in self.acks if at > moment)

    def gap(self, start, end):
        """The longest time without a 201 between consecutive 201s around [start, end]."""
        with self.lock:
            times = sorted(at for at, *_ in self.acks)
        return max((b - a for a, b in zip(times, times[1:]) if b >= start and a <= end), default=0.0)

    def wait_flowing(self, what, since, timeout, count=10):
        """Waits until `count` orders were acknowledged after `since` (monotonic); fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked_since(since) >= count:
                return
            time.sleep(0.1)
        raise Failure("%s: %d orders acknowledged in %d s (%d retries; %d unexpected answers, the last: %s)"
                      % (what, self.acked_since(since), timeout, self.retries, len(self.unexpected),
                         self.unexpected[-1] if self.unexpected else "none"))
