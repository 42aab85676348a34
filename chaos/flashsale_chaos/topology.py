"""One scenario's topology on 127.0.0.1: a Redis primary (AOF `appendfsync always`, or RDB only for the
control) behind a `TCPProxy`, or with two replicas and three Sentinels for the failover scenario; the
wire-level MongoDB server; three `flashsale serve` instances; haproxy in front of them. A topology that
fails to start stops what it started; `shutdown()` stops everything."""

import base64
import json
import os
import socket
import time

from . import JWT_SECRET, ROOT
from .clients import free_port, redis_call, request, wait_until
from .processes import Process, TCPProxy


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
