"""One scenario's topology on 127.0.0.1: a Redis primary (AOF `appendfsync always`, or RDB only for the
control) behind a `TCPProxy`, or with two replicas and three Sentinels for the failover scenario; the
wire-level MongoDB server; three `flashsale serve` instances; haproxy in front of them. A topology that
fails to start stops what it started; `shutdown()` stops everything.

With TLS (`make_certificates` once per run, then `Topology(..., tls=...)`) the instances serve HTTPS only
and haproxy re-encrypts: it terminates TLS for the clients and connects to the instances, health checks
included, over TLS that it verifies against the same throwaway CA."""

import base64
import collections
import http.client as httpclient
import json
import os
import socket
import subprocess
import time

from . import JWT_SECRET, ROOT
from .balancer import haproxy_config
from .clients import free_port, redis_call, request, wait_until
from .cluster import Cluster, sale_slot
from .processes import Process, TCPProxy

TLSFiles = collections.namedtuple("TLSFiles", "ca cert key haproxy")


def make_certificates(workdir):
    """A throwaway CA and one server certificate it signs (EC P-256, valid a day, SAN IP:127.0.0.1 and
    DNS:localhost) for the instances and haproxy, under `workdir/tls`. haproxy wants certificate and key
    in one PEM file (`haproxy`)."""
    directory = os.path.join(workdir, "tls")
    os.makedirs(directory, exist_ok=True)
    files = TLSFiles(*(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key", "haproxy.pem")))
    ca_key, csr, extensions = (os.path.join(directory, name) for name in ("ca.key", "server.csr", "server.ext"))
    with open(extensions, "w") as handle:
        handle.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                     "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                     "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for argv in (["openssl", "req", "-x509"] + curve + ["-days", "1", "-subj", "/CN=FlashSale chaos CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                  "-keyout", ca_key, "-out", files.ca],
                 ["openssl", "req"] + curve + ["-subj", "/CN=127.0.0.1", "-keyout", files.key, "-out", csr],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", ca_key, "-CAcreateserial",
                  "-days", "1", "-extfile", extensions, "-out", files.cert]):
        made = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        if made.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(argv[:2]), made.stderr.decode(errors="replace").strip()))
    with open(files.haproxy, "w") as bundle:
        for part in (files.cert, files.key):
            with open(part) as handle:
                bundle.write(handle.read())
    for secret in (ca_key, files.key, files.haproxy):
        os.chmod(secret, 0o600)
    return files


class Topology:
    def __init__(self, scenario, binary, workdir, sentinel=False, durable=True, rate_limits=False, offsets=None,
                 tls=None, fleet_order_delay_ms=0, isolatable=False, l4=False, shutdown_delay=0, cluster=False):
        """`isolatable` (with `sentinel`): everybody reaches the primary through the TCP proxy (replicas,
        Sentinels and, by the address the Sentinels give, the instances), so a scenario can cut it from all
        but one instance. `l4`: haproxy balances TCP connections and never re-sends a request (as kube-proxy
        or a cloud network load balancer). `shutdown_delay`: the instances' FLASHSALE_SHUTDOWN_DELAY_SECONDS.
        `cluster` (replicas per master, 1 or 2): the ledger on a Redis Cluster of three masters (see `cluster`), the
        instances given its masters as seeds and waiting for one replica ack per commit."""
        if l4 and tls:
            raise ValueError("the L4 balancer topology runs without TLS")
        self.scenario, self.binary, self.workdir, self.tls = scenario, binary, workdir, tls
        self.fleet_order_delay_ms = fleet_order_delay_ms
        self.isolatable, self.l4, self.shutdown_delay = isolatable, l4, shutdown_delay
        self.processes = []
        self.proxy = None
        self.cluster = None
        self.want_cluster = cluster
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
        if self.want_cluster:
            self.cluster = Cluster(self, replicas_per_master=int(self.want_cluster))
            self.redis_port = self.primary_address = self.cluster.master_ports[0]
            self.redis = self.cluster.processes[self.redis_port]
        else:
            self.redis_port = free_port()
            self.redis = self._start_redis("redis", self.redis_port, self.redis_dir)
        if sentinel and self.isolatable:
            self.proxy = TCPProxy(self.redis_port)
        if self.cluster:
            pass
        elif sentinel:
            # Two replicas: with one replica ack required, commits go on after a failover while the other
            # replica remains (with a single replica they would stop until the old primary rejoined).
            # The primary's address as replicas, Sentinels and instances know it.
            self.primary_address = self.proxy.port if self.proxy else self.redis_port
            self.replica_ports = [free_port(), free_port()]
            for index, port in enumerate(self.replica_ports):
                replica_dir = os.path.join(self.workdir, "replica-%d" % index)
                os.makedirs(replica_dir, exist_ok=True)
                self._start_redis("replica-%d" % index, port, replica_dir,
                                  ["--replicaof", "127.0.0.1", str(self.primary_address)])
                wait_until(lambda: "master_link_status:up" in redis_call(port, "INFO", "replication"), 15)
            for index in range(3):
                self.sentinels.append(self._start_sentinel(index))
            wait_until(lambda: all(len(redis_call(port, "SENTINEL", "replicas", "flashsale") or []) == 2
                                   for _, port in self.sentinels), 20)
        else:
            self.proxy = TCPProxy(self.redis_port)
            self.primary_address = self.redis_port

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
        if self.tls:
            for port in self.instance_ports + [self.lb_port]:
                self._refuses_plain_http(port)

    @staticmethod
    def _refuses_plain_http(port):
        """A TLS-only port must not answer plain HTTP: the run would otherwise prove nothing about TLS."""
        try:
            status, _ = request(port, "GET", "/healthz", timeout=2, plain=True)
        except (OSError, httpclient.HTTPException):
            return
        raise RuntimeError("port %d answered plain HTTP (%s) although the run uses TLS" % (port, status))

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
                         "sentinel parallel-syncs flashsale 1\n" % (port, directory, self.primary_address))
        process = self._spawn("sentinel-%d" % index, ["redis-server", config, "--sentinel"])
        if not wait_until(lambda: redis_call(port, "PING") == "PONG", 15):
            raise RuntimeError("sentinel %d did not start" % index)
        return process, port

    def _start_instance(self, index, port, sentinel, rate_limits, offset):
        env = {
            "FLASHSALE_JWT_SECRET": JWT_SECRET,
            # A stop is SIGTERM straight to the instance; only the rolling upgrade gives haproxy's checks
            # notice time (FLASHSALE_SHUTDOWN_DELAY_SECONDS) and measures what they make of it.
            "FLASHSALE_SHUTDOWN_DELAY_SECONDS": str(self.shutdown_delay),
            "FLASHSALE_DATA_KEY": self.data_key,
            "FLASHSALE_LOG_LEVEL": "warning",
            "MONGO_URI": "mongodb://127.0.0.1:%d/flashsale?directConnection=true&serverSelectionTimeoutMS=1000"
                         "&connectTimeoutMS=500&socketTimeoutMS=3000" % self.mongo_port,
            "FLASHSALE_RATE_LIMIT_CUSTOMER": "20" if rate_limits else "0",
            "FLASHSALE_RATE_LIMIT_ADDRESS": "100" if rate_limits else "0",
            # haproxy on this host is the front: each client's budget is its own address from X-Forwarded-For.
            "FLASHSALE_TRUSTED_PROXIES": "127.0.0.1/32",
        }
        if self.cluster:
            env["FLASHSALE_REDIS_CLUSTER_NODES"] = self.cluster.seeds
            env["FLASHSALE_REDIS_REPLICA_ACKS"] = "1"
            env["FLASHSALE_REDIS_REPLICA_ACK_TIMEOUT_MS"] = "500"
            redis_url = "redis://127.0.0.1:%d" % self.redis_port
        elif sentinel:
            env["FLASHSALE_REDIS_SENTINELS"] = ",".join("127.0.0.1:%d" % p for _, p in self.sentinels)
            env["FLASHSALE_REDIS_REPLICA_ACKS"] = "1"
            env["FLASHSALE_REDIS_REPLICA_ACK_TIMEOUT_MS"] = "500"
            redis_url = "redis://127.0.0.1:%d" % self.primary_address
        else:
            redis_url = "redis://127.0.0.1:%d" % self.proxy.port
        if self.tls:
            env["FLASHSALE_TLS_CERT_FILE"], env["FLASHSALE_TLS_KEY_FILE"] = self.tls.cert, self.tls.key
        argv = [self.binary, "serve", "--port", str(port), "--redis-url", redis_url, "--instance-id", "chaos-%d" % index]
        if self.fleet_order_delay_ms:
            env["FLASHSALE_FLEET_ORDER_DELAY_MS"] = str(self.fleet_order_delay_ms)
        if offset:
            # libfaketime recurses with jemalloc at start-up; the instance's injectable wall clock is used.
            env["FLASHSALE_FAULT_CLOCK_OFFSET_MS"] = str(offset)
        return self._spawn("instance-%d" % index, argv, env)

    def restart_instance(self, index):
        self.instances[index].start()
        return wait_until(lambda: request(self.instance_ports[index], "GET", "/readyz", timeout=2)[0] == 200, 30)

    @property
    def haproxy_socket(self):
        return os.path.join(self.workdir, "haproxy.sock")

    def haproxy_command(self, command):
        """One command on haproxy's stats socket (`show info`, `show servers state`): its answer."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(5)
            connection.connect(self.haproxy_socket)
            connection.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return data.decode("utf-8", "replace")
                data += chunk

    def haproxy_servers(self):
        """haproxy's view of each instance: {name: {"status": "UP"|"DOWN"|..., "downs": UP-to-DOWN transitions}}."""
        lines = self.haproxy_command("show stat").splitlines()
        columns = lines[0].lstrip("# ").split(",")
        servers = {}
        for line in lines[1:]:
            row = dict(zip(columns, line.split(",")))
            if row.get("pxname") == "instances" and row.get("svname") not in ("BACKEND", "FRONTEND", None):
                servers[row["svname"]] = {"status": row.get("status", ""), "downs": int(row.get("chkdown") or 0)}
        return servers

    def tls_evidence(self):
        """What haproxy says about TLS: its TLS connections so far (from clients and to instances, health
        checks included) and whether every server of the backend uses TLS."""
        info = dict(line.split(": ", 1) for line in self.haproxy_command("show info").splitlines() if ": " in line)
        state = self.haproxy_command("show servers state instances").splitlines()
        columns = state[1].lstrip("# ").split()  # the first line is the format version
        servers = [dict(zip(columns, line.split())) for line in state[2:] if line.strip()]
        return {"haproxyTLSConnections": int(info.get("CumSslConns", 0)),
                "serversUseTLS": bool(servers) and all(server.get("srv_use_ssl") == "1" for server in servers)}

    def _start_haproxy(self):
        config = os.path.join(self.workdir, "haproxy.cfg")
        bind, backend_tls = "", ""
        if self.tls:
            # Re-encryption: the clients' TLS ends here; traffic and health checks to the instances go over
            # TLS verified against the CA. haproxy checks the certificate's name against the SNI it sends
            # (`sni` for traffic, `check-sni` for checks); `ssl` alone would already cover the checks.
            bind = " ssl crt %s ssl-min-ver TLSv1.2" % self.tls.haproxy
            backend_tls = (" ssl verify required ca-file %s sni str(localhost) check-ssl check-sni localhost"
                           % self.tls.ca)
        if self.l4:
            # A network load balancer: TCP connections spread over the instances that pass the same health
            # check, no request ever re-sent, a refused connection not retried elsewhere.
            mode, retries, frontend = "tcp", ["retries 0"], []
        else:
            mode, frontend = "http", ["option forwardfor"]
            retries = ["retries 2", "option redispatch", "retry-on conn-failure empty-response"]
        with open(config, "w") as handle:
            handle.write(haproxy_config(
                self.lb_port, self.instance_ports, ["maxconn 8000", "stats socket %s mode 600 level user" % self.haproxy_socket],
                ["timeout connect 1s", "timeout client 15s", "timeout server 10s"] + retries, frontend,
                ["option httpchk GET /readyz", "http-check expect status 200"], bind_options=bind,
                server_options=" check inter 300 fall 2 rise 1" + backend_tls, mode=mode))
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
        """The Redis primary now (a Sentinel's answer in the failover topology; on a cluster, the master that owns
        the sale's slot)."""
        if self.cluster:
            return self.cluster.owner(sale_slot(self.sale))
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
