#!/usr/bin/env python3
"""FlashSale chaos suite: real processes on loopback, faults on a schedule, a checked history.

Each scenario starts a topology (three `flashsale serve` instances behind haproxy, a Redis primary with
AOF `appendfsync always` behind a TCP proxy the harness controls, the wire-level MongoDB server, and for
the failover scenario two replicas and three Sentinels), runs a sale under a workload of many customers,
injects its fault, heals, waits for quiescence and checks the history against the ledger and MongoDB:

  - confirmed units <= stock (no oversell),
  - every acknowledged order (a 201) is in the ledger after healing, and in MongoDB after draining,
  - no customer above the per-customer limit, no idempotency key with two orders,
  - pool + leases + sold == stock at quiescence,
  - requests whose outcome was unknown (timeout, dropped connection) are resolved by reading the ledger.

    chaos.py [--scenarios kill-instance,pause-instance,...] [--bin .build/debug/flashsale] [--quick]

Everything is bounded: each scenario has a hard deadline, every wait has a timeout, every process the
harness starts is stopped at the end (also on errors). Traffic stays on 127.0.0.1.
Exit status: 0 when every scenario passed its checks (the control scenario is expected to lose orders and
is reported, not failed), 1 otherwise.
"""

import argparse
import base64
import hashlib
import hmac
import http.client as httpclient
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JWT_SECRET = "chaos-secret-0123456789abcdef"
LEASE_TTL_SECONDS = 2.0  # EngineConfiguration's default lease TTL


# ---------------------------------------------------------------------------------------------------------
# Small clients: RESP, HTTP, tokens


class Redis:
    """A minimal RESP2 client (one connection, blocking, with a timeout)."""

    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError("bad RESP line %r" % line)


def redis_call(port, *args, timeout=3.0):
    client = Redis(port, timeout)
    try:
        return client(*args)
    finally:
        client.close()


def pairs(flat):
    flat = flat or []
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(subject, admin=False, ttl=3600):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": subject, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    if admin:
        claims["scope"] = "admin"
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing = (header + "." + payload).encode()
    signature = hmac.new(JWT_SECRET.encode(), signing, hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(signature)


def request(port, method, path, body=None, bearer=None, headers=None, timeout=5.0):
    """One request on a fresh connection: (status, json-or-text). Raises on network errors and timeouts."""
    connection = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if bearer:
            all_headers["Authorization"] = "Bearer " + bearer
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")
    finally:
        connection.close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails is simply "not yet"
            pass
        time.sleep(interval)
    return False


# ---------------------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process with its output in a log file; stop() escalates to SIGKILL after a grace period."""

    def __init__(self, name, argv, workdir, env=None):
        self.name, self.argv, self.workdir, self.env = name, argv, workdir, env
        self.popen = None
        self.start()

    def start(self):
        log = open(os.path.join(self.workdir, self.name + ".log"), "ab")
        env = dict(os.environ)
        env.update(self.env or {})
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, cwd=self.workdir, start_new_session=True)
        log.close()

    @property
    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        if self.alive:
            os.kill(self.popen.pid, sig)

    def kill(self):
        if self.alive:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, grace=10.0):
        if not self.alive:
            return
        self.signal(signal.SIGCONT)
        self.popen.terminate()
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def rss_bytes(self):
        try:
            with open("/proc/%d/status" % self.popen.pid) as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0


class TCPProxy:
    """A loopback TCP proxy the harness can cut (drop every connection, refuse new ones) and heal."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = set()
        self.is_cut = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.is_cut:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections.update([client, upstream])
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
            with self.lock:
                self.connections.discard(source)
                self.connections.discard(sink)

    def cut(self):
        with self.lock:
            self.is_cut = True
            victims = list(self.connections)
        for connection in victims:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def heal(self):
        with self.lock:
            self.is_cut = False

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()


# ---------------------------------------------------------------------------------------------------------
# The topology


class Topology:
    def __init__(self, scenario, binary, workdir, sentinel=False, durable=True, rate_limits=False, offsets=None):
        self.scenario, self.binary, self.workdir = scenario, binary, workdir
        self.processes = []
        self.proxy = None
        self.observed = {}
        try:
            self._start(sentinel, durable, rate_limits, offsets)
        except BaseException:
            self.shutdown()  # a topology that failed to start leaves no process behind
            raise

    def _start(self, sentinel, durable, rate_limits, offsets):
        self.sentinels = []
        self.durable = durable
        self.redis_dir = os.path.join(self.workdir, "redis")
        os.makedirs(self.redis_dir, exist_ok=True)
        self.redis_port = free_port()
        self.redis = self._start_redis("redis", self.redis_port, self.redis_dir)
        if sentinel:
            # Two replicas: with one replica ack required, commits go on after a failover while the other
            # replica remains (with a single replica they would stop until the old primary rejoined).
            self.replica_ports = [free_port(), free_port()]
            for index, port in enumerate(self.replica_ports):
                replica_dir = os.path.join(self.workdir, "replica-%d" % index)
                os.makedirs(replica_dir, exist_ok=True)
                self._start_redis("replica-%d" % index, port, replica_dir, ["--replicaof", "127.0.0.1", str(self.redis_port)])
                wait_until(lambda: "master_link_status:up" in redis_call(port, "INFO", "replication"), 15)
            for index in range(3):
                self.sentinels.append(self._start_sentinel(index))
            wait_until(lambda: all(len(redis_call(port, "SENTINEL", "replicas", "flashsale") or []) == 2
                                   for _, port in self.sentinels), 20)
        else:
            self.proxy = TCPProxy(self.redis_port)

        self.mongo_port, self.mongo_control = free_port(), free_port()
        self.mongo = self._spawn("mongo", [os.path.join(ROOT, ".venv/bin/python"),
                                           os.path.join(ROOT, "Tests/Fixtures/mongo_wire_server.py"),
                                           "--port", str(self.mongo_port), "--control-port", str(self.mongo_control)])
        if not wait_until(lambda: self.mongo_op({"op": "ping"}).get("ok"), 15):
            raise RuntimeError("the wire-level MongoDB server did not start")

        self.data_key = base64.b64encode(os.urandom(32)).decode()
        self.instance_ports = [free_port() for _ in range(3)]
        self.instances = []
        offsets = offsets or {}
        for index, port in enumerate(self.instance_ports):
            self.instances.append(self._start_instance(index, port, sentinel, rate_limits, offsets.get(index)))
        for port in self.instance_ports:
            if not wait_until(lambda: request(port, "GET", "/readyz", timeout=2)[0] == 200, 30):
                raise RuntimeError("instance on port %d did not become ready" % port)
        self.lb_port = free_port()
        self.haproxy = self._start_haproxy()
        if not wait_until(lambda: request(self.lb_port, "GET", "/healthz", timeout=2)[0] == 200, 15):
            raise RuntimeError("haproxy did not come up")

    def _spawn(self, name, argv, env=None):
        process = Process(name, argv, self.workdir, env)
        self.processes.append(process)
        return process

    def _start_redis(self, name, port, directory, extra=()):
        persistence = (["--appendonly", "yes", "--appendfsync", "always", "--save", ""] if self.durable
                       else ["--appendonly", "no", "--save", "1 1"])
        process = self._spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
                                     "--daemonize", "no"] + persistence + list(extra))
        if not wait_until(lambda: redis_call(port, "PING") == "PONG", 15):
            raise RuntimeError("%s did not start" % name)
        return process

    def restart_redis(self):
        self.redis.start()
        wait_until(lambda: redis_call(self.redis_port, "PING") == "PONG", 30)

    def _start_sentinel(self, index):
        port = free_port()
        directory = os.path.join(self.workdir, "sentinel-%d" % index)
        os.makedirs(directory, exist_ok=True)
        config = os.path.join(directory, "sentinel.conf")
        with open(config, "w") as handle:
            handle.write("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                         "sentinel monitor flashsale 127.0.0.1 %d 2\n"
                         "sentinel down-after-milliseconds flashsale 1000\n"
                         "sentinel failover-timeout flashsale 3000\n"
                         "sentinel parallel-syncs flashsale 1\n" % (port, directory, self.redis_port))
        process = self._spawn("sentinel-%d" % index, ["redis-server", config, "--sentinel"])
        if not wait_until(lambda: redis_call(port, "PING") == "PONG", 15):
            raise RuntimeError("sentinel %d did not start" % index)
        return process, port

    def _start_instance(self, index, port, sentinel, rate_limits, offset):
        env = {
            "FLASHSALE_JWT_SECRET": JWT_SECRET,
            "FLASHSALE_DATA_KEY": self.data_key,
            "FLASHSALE_LOG_LEVEL": "warning",
            "MONGO_URI": "mongodb://127.0.0.1:%d/flashsale?directConnection=true&serverSelectionTimeoutMS=1000"
                         "&connectTimeoutMS=500&socketTimeoutMS=3000" % self.mongo_port,
            "FLASHSALE_RATE_LIMIT_CUSTOMER": "20" if rate_limits else "0",
            "FLASHSALE_RATE_LIMIT_ADDRESS": "100" if rate_limits else "0",
        }
        if sentinel:
            env["FLASHSALE_REDIS_SENTINELS"] = ",".join("127.0.0.1:%d" % p for _, p in self.sentinels)
            env["FLASHSALE_REDIS_REPLICA_ACKS"] = "1"
            env["FLASHSALE_REDIS_REPLICA_ACK_TIMEOUT_MS"] = "500"
            redis_url = "redis://127.0.0.1:%d" % self.redis_port
        else:
            redis_url = "redis://127.0.0.1:%d" % self.proxy.port
        argv = [self.binary, "serve", "--port", str(port), "--redis-url", redis_url, "--instance-id", "chaos-%d" % index]
        if offset:
            # libfaketime recurses with jemalloc at start-up; the instance's injectable wall clock is used.
            env["FLASHSALE_FAULT_CLOCK_OFFSET_MS"] = str(offset)
        return self._spawn("instance-%d" % index, argv, env)

    def restart_instance(self, index):
        self.instances[index].start()
        return wait_until(lambda: request(self.instance_ports[index], "GET", "/readyz", timeout=2)[0] == 200, 30)

    def _start_haproxy(self):
        config = os.path.join(self.workdir, "haproxy.cfg")
        servers = "\n".join("    server i%d 127.0.0.1:%d check inter 300 fall 2 rise 1" % (i, p)
                            for i, p in enumerate(self.instance_ports))
        with open(config, "w") as handle:
            handle.write("""global
    maxconn 8000
defaults
    mode http
    timeout connect 1s
    timeout client 15s
    timeout server 10s
    retries 2
    option redispatch
    retry-on conn-failure empty-response
frontend api
    bind 127.0.0.1:%d
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
%s
""" % (self.lb_port, servers))
        return self._spawn("haproxy", ["haproxy", "-f", config, "-db"])

    def mongo_op(self, operation):
        with socket.create_connection(("127.0.0.1", self.mongo_control), timeout=10) as connection:
            connection.sendall((json.dumps(operation) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = connection.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        return json.loads(data or b"{}")

    @property
    def primary_port(self):
        """The Redis primary now (a Sentinel's answer in the failover topology)."""
        if not self.sentinels:
            return self.redis_port
        for _ in range(20):  # bounded: 20 rounds over the Sentinels, 0.1 s apart
            for _, port in self.sentinels:
                try:
                    answer = redis_call(port, "SENTINEL", "get-master-addr-by-name", "flashsale")
                    if answer:
                        return int(answer[1])
                except Exception:  # noqa: BLE001 - ask the next Sentinel
                    continue
            time.sleep(0.1)
        raise RuntimeError("no Sentinel names a primary")

    def shutdown(self):
        for process in reversed(self.processes):
            try:
                process.stop(grace=5)
            except Exception:  # noqa: BLE001 - keep stopping the others
                process.kill()
        if self.proxy:
            self.proxy.close()


# ---------------------------------------------------------------------------------------------------------
# The workload and its history


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts = []  # dicts: customer, key, quantity, sent, status, order, latency

    def record(self, **entry):
        with self.lock:
            self.attempts.append(entry)


def run_customer(lb_port, sale, customer, quantity, history, deadline, max_attempts=8):
    """One customer's intent: a single Idempotency-Key, retried on 429/503/unknown outcomes until a definite
    answer, the attempt bound or the deadline."""
    key = "buy-" + customer
    bearer = token(customer)
    body = {"quantity": quantity, "delivery": {"name": "Customer " + customer, "phone": "5550100",
                                               "address": "1 Chaos Street"}}
    for attempt in range(max_attempts):
        if time.monotonic() > deadline:
            return
        sent = time.time()
        started = time.monotonic()
        try:
            status, reply = request(lb_port, "POST", "/sales/%s/orders" % sale, body, bearer,
                                 {"Idempotency-Key": key}, timeout=4.0)
        except (OSError, httpclient.HTTPException):
            history.record(customer=customer, key=key, quantity=quantity, sent=sent, status="unknown", order=None,
                           latency=time.monotonic() - started)
            time.sleep(0.2 + random.random() * 0.3)
            continue
        order = reply.get("orderId") if isinstance(reply, dict) else None
        history.record(customer=customer, key=key, quantity=quantity, sent=sent, status=status, order=order,
                       latency=time.monotonic() - started)
        if status in (201, 202, 409, 400, 401, 404):
            return
        retry_after = 0.2 + random.random() * 0.4
        time.sleep(min(retry_after * (attempt + 1), 1.5))


# ---------------------------------------------------------------------------------------------------------
# Scenarios


class Scenario:
    """`effect(topology, history, stocklog)` answers (took effect?, evidence): a fault that changed nothing
    proves nothing, so a scenario passes only when its fault demonstrably happened."""

    def __init__(self, name, description, inject, heal=None, topology=None, workload=None, control=False, effect=None):
        self.name, self.description, self.inject, self.heal = name, description, inject, heal
        self.topology = topology or {}
        self.workload = workload or {}
        self.control = control
        self.effect = effect


def sleep(seconds):
    time.sleep(seconds)


def kill_instance(t):
    t.instances[0].kill()


def restart_instance_0(t):
    t.restart_instance(0)


def pause_instance(t):
    t.instances[0].signal(signal.SIGSTOP)
    sleep(LEASE_TTL_SECONDS * 2)  # longer than the lease: the ledger reclaims it; the instance is fenced


def resume_instance(t):
    t.instances[0].signal(signal.SIGCONT)


def kill_redis(t):
    t.redis.kill()
    sleep(1.5)


def restart_redis(t):
    t.restart_redis()


def cut_redis(t):
    t.proxy.cut()
    sleep(3.0)


def heal_redis(t):
    t.proxy.heal()


def kill_primary(t):
    t.redis.kill()
    killed = time.monotonic()
    # Sentinels notice after 1 s and promote the replica.
    if wait_until(lambda: t.primary_port in t.replica_ports, 20):
        t.observed["promotedAfterSeconds"] = round(time.monotonic() - killed, 2)


def rejoin_old_primary(t):
    t.restart_redis()  # Sentinel reconfigures it as a replica of the new primary


def mongo_up(t):
    t.mongo_op({"op": "up"})


def rebalance_and_drain(t):
    admin = token("chaos-admin", admin=True)
    request(t.instance_ports[2], "POST", "/admin/sales/%s/rebalance" % t.sale, {"mode": "even"}, admin)
    sleep(0.5)
    request(t.instance_ports[2], "POST", "/admin/sales/%s/rebalance" % t.sale, {"mode": "drain", "instance": "chaos-1"}, admin)
    t.instances[1].stop(grace=15)  # SIGTERM: stop intake, flush commits, return leases


def restart_instance_1(t):
    t.restart_instance(1)


def nothing(t):
    sleep(2.0)


def mongo_down_observed(t):
    """While MongoDB is down, an instance's /readyz reports failed outbox passes."""
    t.mongo_op({"op": "down"})
    sleep(2.5)
    try:
        details = request(t.instance_ports[0], "GET", "/readyz", timeout=2)[1].get("details", {})
        t.observed["outboxFailuresDuringOutage"] = details.get("consecutiveFailures", 0)
    except Exception:  # noqa: BLE001 - the effect check reports the absence
        pass
    sleep(1.5)


# Effect probes: evidence that each fault happened and mattered.

def leases_expired_of(instance):
    def probe(t, history, stocklog):
        expired = [e for e in stocklog if e.get("reason") == "lease_expired" and e.get("instance") == instance]
        return bool(expired), "%d leases of %s expired in the ledger" % (len(expired), instance)
    return probe


def requests_refused(t, history, stocklog):
    refused = sum(1 for a in history.attempts if a["status"] in (503, "unknown"))
    return refused > 0, "%d requests answered 503 or unknown during the outage" % refused


def primary_moved(t, history, stocklog):
    promoted = t.observed.get("promotedAfterSeconds")
    return promoted is not None, "a replica was promoted %s s after the primary was killed; primary at the end: port %d (replicas %s)" % (
        promoted, t.primary_port, t.replica_ports)


def outbox_failed(t, history, stocklog):
    failures = t.observed.get("outboxFailuresDuringOutage", 0)
    return failures > 0, "%d outbox passes failed during the outage" % failures


def leases_returned_by(instance):
    def probe(t, history, stocklog):
        moved = [e for e in stocklog if e.get("reason") in ("lease_returned", "lease_revoked") and e.get("instance") == instance]
        return bool(moved), "%d leases of %s returned or revoked" % (len(moved), instance)
    return probe


def clock_skewed(t, history, stocklog):
    # The skewed instances sell like the others: their leases carried orders.
    sellers = {e.get("instance") for e in stocklog if e.get("reason") == "lease_granted"}
    return {"chaos-1", "chaos-2"} <= sellers, "instances with leases: %s" % ", ".join(sorted(x for x in sellers if x))


def load_shed(t, history, stocklog):
    shed = sum(1 for a in history.attempts if a["status"] in (429, 503))
    return shed > 0, "%d requests shed with 429/503" % shed


SCENARIOS = [
    Scenario("kill-instance", "SIGKILL an instance mid-sale, restart it", kill_instance, restart_instance_0,
             effect=leases_expired_of("chaos-0")),
    Scenario("pause-instance", "SIGSTOP an instance for twice the lease TTL, then SIGCONT (fencing)",
             pause_instance, resume_instance, effect=leases_expired_of("chaos-0")),
    Scenario("kill-redis", "SIGKILL Redis, restart it on its AOF (appendfsync always)", kill_redis, restart_redis,
             effect=requests_refused),
    Scenario("partition", "cut every instance-Redis connection for 3 s", cut_redis, heal_redis, effect=requests_refused),
    Scenario("sentinel-failover", "SIGKILL the primary of 2 replicas; Sentinel promotes one; commits wait for 1 replica ack",
             kill_primary, rejoin_old_primary, topology={"sentinel": True}, effect=primary_moved),
    Scenario("mongo-down", "MongoDB unreachable for 4 s, then back", mongo_down_observed, mongo_up, effect=outbox_failed),
    Scenario("rebalance-drain", "rebalance, then drain and stop an instance mid-sale (SIGTERM), restart it",
             rebalance_and_drain, restart_instance_1, effect=leases_returned_by("chaos-1")),
    Scenario("clock-offset", "instances 1 and 2 run with wall clocks 20 s ahead and 25 s behind",
             nothing, topology={"offsets": {1: 20_000, 2: -25_000}}, effect=clock_skewed),
    Scenario("overload", "8,000 customers on 400 connections, far above the admitted 300 req/s: shed, stay correct",
             nothing, topology={"rate_limits": True}, workload={"customers": 8000, "workers": 400, "stock": 1500},
             effect=load_shed),
    Scenario("control-kill-redis-no-aof", "CONTROL: SIGKILL Redis running without AOF (RDB every second), restart",
             kill_redis, restart_redis, topology={"durable": False}, control=True, effect=requests_refused),
]


# ---------------------------------------------------------------------------------------------------------
# Running and checking


def run_scenario(scenario, binary, root_workdir, quick):
    workdir = os.path.join(root_workdir, scenario.name)
    os.makedirs(workdir, exist_ok=True)
    result = {"scenario": scenario.name, "description": scenario.description, "control": scenario.control}
    topology = None
    started = time.monotonic()
    try:
        topology = Topology(scenario.name, binary, workdir, **scenario.topology)
        stock = scenario.workload.get("stock", 300 if quick else 600)
        customers = scenario.workload.get("customers", 900 if quick else 1800)
        workers = scenario.workload.get("workers", 48)
        sale = "chaos-%s-%d" % (scenario.name, int(time.time()))
        topology.sale = sale
        admin = token("chaos-admin", admin=True)
        starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
        status, reply = request(topology.lb_port, "POST", "/admin/sales",
                             {"id": sale, "name": "Chaos phones", "stock": stock, "startsAt": starts,
                              "durationSeconds": 600, "perCustomerLimit": 2}, admin)
        if status != 201:
            raise RuntimeError("creating the sale answered %s %s" % (status, reply))
        time.sleep(2.2)  # the sale opens 2 s after creation
        wait_until(lambda: request(topology.lb_port, "GET", "/sales/%s" % sale, timeout=2)[1].get("status") == "open", 10)

        history = History()
        rng = random.Random(scenario.name)
        intents = [("c%05d" % i, rng.choice([1, 1, 2])) for i in range(customers)]
        deadline = time.monotonic() + (25 if quick else 40)
        fault = {}

        def faults():
            time.sleep(1.0)
            fault["injected"], fault["injectedWall"] = time.monotonic(), time.time()
            scenario.inject(topology)
            fault["healStartedWall"], heal_started = time.time(), time.monotonic()
            if scenario.heal:
                scenario.heal(topology)
            # Measured while the workload still runs: from the start of healing until every instance is ready.
            fault["readySeconds"] = measure_recovery(topology, heal_started)

        injector = threading.Thread(target=faults, daemon=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            injector.start()
            # Customers arrive over ~6 s: the fault lands in the middle of the sale.
            futures = []
            for index, (customer, quantity) in enumerate(intents):
                futures.append(pool.submit(run_customer, topology.lb_port, sale, customer, quantity, history, deadline))
                if index % max(1, customers // 60) == 0:
                    time.sleep(0.1)
            for future in futures:
                future.result()
        injector.join(60)
        with open(os.path.join(workdir, "history.jsonl"), "w") as handle:
            for attempt in sorted(history.attempts, key=lambda a: a["sent"]):
                handle.write(json.dumps(attempt) + "\n")
        result["recoverySeconds"] = recovery(history, fault)
        result["outageSeconds"] = outage(history, fault)
        result["alive"] = all(p.alive for p in topology.instances)
        result["maxRSSMiB"] = round(max(p.rss_bytes() for p in topology.instances) / 2**20)
        quiesce(topology, sale)
        result.update(check(topology, sale, stock, history))
        stocklog = [pairs(entry[1]) for entry in redis_call(topology.primary_port, "XRANGE", "fs:{%s}:stocklog" % sale, "-", "+") or []]
        took_effect, evidence = scenario.effect(topology, history, stocklog) if scenario.effect else (True, "-")
        result["effect"], result["evidence"] = took_effect, evidence
        # Memory stays bounded (overload especially): an instance above 2 GiB fails the scenario.
        result["passed"] = result["passed"] and result["alive"] and took_effect and result["maxRSSMiB"] < 2048
    except Exception as error:  # noqa: BLE001 - a broken scenario is reported, never hidden
        result.update({"passed": False, "error": "%s: %s" % (type(error).__name__, error)})
    finally:
        if topology:
            topology.shutdown()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def measure_recovery(topology, since):
    """Seconds from `since` (monotonic) until every instance answers /readyz 200 (None after 30 s)."""
    ready = wait_until(lambda: all(request(p, "GET", "/readyz", timeout=2)[0] == 200 for p in topology.instance_ports), 30, 0.05)
    return round(max(0.0, time.monotonic() - since), 2) if ready else None


def recovery(history, fault):
    """Time to recover: from the start of healing until the first order confirmed after it was answered;
    when the sale had sold out by then, until every instance was ready again."""
    started = fault.get("healStartedWall")
    if started is None:
        return None
    confirmed_after = [a["sent"] + a["latency"] - started for a in history.attempts
                       if a["status"] == 201 and a["sent"] >= started]
    if confirmed_after:
        return round(max(0.0, min(confirmed_after)), 2)
    return fault.get("readySeconds")


def outage(history, fault):
    """The longest time without a confirmed order from the fault's injection until the first order confirmed
    after healing began: how long customers could not buy. None when nothing was confirmed after healing."""
    injected, healing = fault.get("injectedWall"), fault.get("healStartedWall")
    if injected is None or healing is None:
        return None
    done = sorted(a["sent"] + a["latency"] for a in history.attempts if a["status"] == 201)
    after_heal = [t for t in done if t >= healing]
    if not after_heal:
        return None
    window = [injected] + [t for t in done if injected <= t <= after_heal[0]]
    return round(max(b - a for a, b in zip(window, window[1:])), 2) if len(window) > 1 else None


def quiesce(topology, sale):
    """Waits (bounded) for the outbox to drain into MongoDB, then stops the instances gracefully so their
    leases return: the ledger is at rest."""
    primary = topology.primary_port
    outbox = "fs:{%s}:outbox" % sale

    def drained():
        pending = redis_call(primary, "XPENDING", outbox, "mongo-sink")
        return redis_call(primary, "XLEN", outbox) == 0 and (pending is None or pending[0] == 0)

    wait_until(drained, 45, 0.25)
    for process in topology.instances:
        process.stop(grace=15)


def check(topology, sale, stock, history):
    primary = topology.primary_port
    keys = {name: "fs:{%s}:%s" % (sale, name) for name in ("meta", "pool", "sold", "leases", "users", "idem", "orders")}
    pool = int(redis_call(primary, "GET", keys["pool"]) or 0)
    sold = int(redis_call(primary, "GET", keys["sold"]) or 0)
    leases = [json.loads(v) for v in pairs(redis_call(primary, "HGETALL", keys["leases"])).values()]
    leased = sum(lease["r"] for lease in leases)
    orders = {k: json.loads(v) for k, v in pairs(redis_call(primary, "HGETALL", keys["orders"])).items()}
    users = {k: int(v) for k, v in pairs(redis_call(primary, "HGETALL", keys["users"])).items()}
    idem = pairs(redis_call(primary, "HGETALL", keys["idem"]))
    meta = pairs(redis_call(primary, "HGETALL", keys["meta"]))
    limit = int(meta.get("limit", 2) or 2)

    acknowledged = {}
    for attempt in history.attempts:
        if attempt["status"] == 201 and attempt["order"]:
            acknowledged[attempt["order"]] = attempt
    confirmed_units = sum(a["quantity"] for a in acknowledged.values())
    lost = [order for order in acknowledged if order not in orders or orders[order]["s"] not in ("confirmed",)]
    ledger_confirmed = [o for o in orders.values() if o["s"] == "confirmed"]
    ledger_units = sum(o["q"] for o in ledger_confirmed)

    per_customer = {}
    for order in ledger_confirmed:
        per_customer[order["c"]] = per_customer.get(order["c"], 0) + order["q"]
    over_limit = [c for c, units in per_customer.items() if units > limit] + [c for c, u in users.items() if u > limit]
    keyed = {}
    for order in ledger_confirmed:
        if order.get("k"):
            keyed.setdefault((order["c"], order["k"]), []).append(order["id"])
    double_keys = [k for k, ids in keyed.items() if len(ids) > 1]

    # Unknown outcomes: customers whose last attempt was unknown; the ledger says what happened.
    last = {}
    for attempt in history.attempts:
        last[attempt["customer"]] = attempt
    unknown = [a for a in last.values() if a["status"] == "unknown"]
    resolved_ordered = 0
    for attempt in unknown:
        field = "%d:%s%s" % (len(attempt["customer"]), attempt["customer"], attempt["key"])
        if field in idem:
            resolved_ordered += 1

    mongo_orders = {d["_id"]: d for d in topology.mongo_op({"op": "documents", "collection": "orders"}).get("documents", [])}
    missing_in_mongo = [o for o in acknowledged if o not in mongo_orders and orders.get(o, {}).get("s") == "confirmed"]

    invariant = pool + leased + sold == stock
    oversold = max(0, confirmed_units - stock, ledger_units - stock, sold - stock)
    statuses = {}
    for attempt in history.attempts:
        statuses[str(attempt["status"])] = statuses.get(str(attempt["status"]), 0) + 1
    passed = (not lost and oversold == 0 and not over_limit and not double_keys and invariant
              and sold == ledger_units and not missing_in_mongo)
    return {
        "requests": len(history.attempts),
        "statuses": statuses,
        "confirmed": len(acknowledged),
        "confirmedUnits": confirmed_units,
        "stock": stock,
        "sold": sold,
        "unknown": len(unknown),
        "unknownResolvedOrdered": resolved_ordered,
        "lost": len(lost),
        "lostOrders": lost[:10],
        "oversold": oversold,
        "overLimit": len(over_limit),
        "doubleKeys": len(double_keys),
        "invariant": invariant,
        "ledgerUnitsMatchSold": sold == ledger_units,
        "missingInMongo": len(missing_in_mongo),
        "leasesAtRest": len(leases),
        "passed": passed,
    }


def print_table(results):
    header = ("scenario", "requests", "confirmed", "unknown", "lost acked", "oversold", "outage s", "recover s", "fault", "result")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["scenario"], "-", "-", "-", "-", "-", "-", "-", "-", "ERROR"))
            continue
        verdict = "PASS" if r["passed"] else "FAIL"
        if r["control"]:
            verdict = "lost orders (expected)" if (r["lost"] or r["oversold"]) else "no loss this run"
        rows.append((r["scenario"], r["requests"], r["confirmed"], "%d (%d ordered)" % (r["unknown"], r["unknownResolvedOrdered"]),
                     r["lost"], r["oversold"], r["outageSeconds"] if r["outageSeconds"] is not None else "-",
                     r["recoverySeconds"] if r["recoverySeconds"] is not None else "-",
                     "took effect" if r.get("effect") else "NO EFFECT", verdict))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for r in results:
        if "evidence" in r:
            print("%s: %s" % (r["scenario"], r["evidence"]))
    for r in results:
        if "error" in r:
            print("%s: %s" % (r["scenario"], r["error"]))
        elif not r["passed"] and not r["control"]:
            details = {k: r[k] for k in ("lost", "lostOrders", "oversold", "overLimit", "doubleKeys", "invariant",
                                         "ledgerUnitsMatchSold", "missingInMongo", "alive", "effect", "maxRSSMiB") if k in r}
            print("%s failed: %s" % (r["scenario"], json.dumps(details)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/flashsale"))
    parser.add_argument("--quick", action="store_true", help="smaller sales (the make test subset)")
    parser.add_argument("--report", default=os.path.join(ROOT, "reports/chaos"), help="where the JSON report and logs go")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    args.bin = os.path.abspath(args.bin)

    names = [s.name for s in SCENARIOS] if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [n for n in names if n not in {s.name for s in SCENARIOS}]
    if unknown:
        parser.error("unknown scenarios: %s (known: %s)" % (", ".join(unknown), ", ".join(s.name for s in SCENARIOS)))
    if not os.access(args.bin, os.X_OK):
        parser.error("%s is not an executable flashsale binary" % args.bin)
    for tool in ("redis-server", "haproxy"):
        if not shutil.which(tool):
            parser.error("%s is not installed (scripts/bootstrap.sh installs it)" % tool)

    # `timeout` (make chaos) sends SIGTERM: unwind through the finally blocks that stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.report, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="flashsale-chaos-")
    results = []
    try:
        for scenario in SCENARIOS:
            if scenario.name not in names:
                continue
            print("chaos: %s: %s" % (scenario.name, scenario.description), flush=True)
            result = run_scenario(scenario, args.bin, workdir, args.quick)
            results.append(result)
            print("chaos: %s %s in %ss" % (scenario.name, "passed" if result.get("passed") else
                                           ("reported" if scenario.control else "FAILED"), result["seconds"]), flush=True)
    finally:
        for result in results:  # every scenario's history is kept: request, send time, reply, order id
            history = os.path.join(workdir, result["scenario"], "history.jsonl")
            if os.path.exists(history):
                shutil.copy(history, os.path.join(args.report, result["scenario"] + ".history.jsonl"))
        if args.keep_logs or any(not r.get("passed") and not r.get("control") for r in results):
            logs = os.path.join(args.report, "logs")
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(workdir, logs, ignore=shutil.ignore_patterns("*.aof", "*.rdb", "appendonlydir"))
        shutil.rmtree(workdir, ignore_errors=True)
    with open(os.path.join(args.report, "chaos.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print()
    print_table(results)
    failed = [r for r in results if not r.get("passed") and not r.get("control")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
