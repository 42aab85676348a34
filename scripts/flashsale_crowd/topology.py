"""The crowd's topology on 127.0.0.1: redis-server (AOF, `appendfsync always`), N `flashsale serve`
instances with the crowd's JWT secret and no rate limits, and with N > 1 haproxy in front of them
(roundrobin, http mode, keep-alive, no health checks, a log line per request). A topology that fails to
start stops what it started; stop() stops everything."""

import base64
import os
import resource

from flashsale_chaos.balancer import haproxy_config
from flashsale_chaos.clients import free_port, request, wait_until

from . import JWT_SECRET
from .clients import redis_call
from .processes import cpu_seconds


class Topology:
    """redis-server (AOF always) + N instances (+ haproxy when N > 1), all on 127.0.0.1."""

    def __init__(self, procs, binary, workdir, instances, order_path, haproxy_maxconn=9000, fleet_order_delay_ms=0,
                 server_env=None):
        self.procs, self.workdir = procs, workdir
        self.fleet_order_delay_ms = fleet_order_delay_ms
        self.server_env = dict(server_env or {})  # FLASHSALE_* settings of the instances, on top of the crowd's
        assert all(key.startswith("FLASHSALE_") for key in self.server_env), "only FLASHSALE_* settings"
        self.redis, self.instances, self.haproxy = None, [], None
        self.haproxy_maxconn, self.haproxy_warnings = haproxy_maxconn, []
        try:
            self._start(binary, instances, order_path)
        except BaseException:
            self.stop()  # a topology that failed to start leaves no process behind
            raise

    def _start(self, binary, instances, order_path):
        procs, workdir = self.procs, self.workdir
        self.redis_port = free_port()
        redis_dir = os.path.join(workdir, "redis")
        os.makedirs(redis_dir)
        self.redis = procs.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                           "--dir", redis_dir, "--save", "", "--appendonly", "yes",
                                           "--appendfsync", "always", "--daemonize", "no"], workdir)
        if not wait_until(lambda: redis_call(self.redis_port, "PING") == "PONG", 15):
            raise RuntimeError("redis-server did not start (see %s/redis.log)" % workdir)
        self.instance_ports = [free_port() for _ in range(instances)]
        env = self._instance_env(instances)
        for index, port in enumerate(self.instance_ports):
            self.instances.append(procs.start(
                "instance-%d" % index,
                [binary, "serve", "--port", str(port), "--redis-url", "redis://127.0.0.1:%d" % self.redis_port,
                 "--order-path", order_path, "--instance-id", "crowd-%d" % index], workdir, env))
        for index, port in enumerate(self.instance_ports):
            if not wait_until(lambda: request(port, "GET", "/readyz", timeout=2)[0] == 200, 60, 0.2):
                raise RuntimeError("instance %d (port %d) did not become ready (see %s/instance-%d.log)"
                                   % (index, port, workdir, index))
        if instances > 1:
            self.port = free_port()
            self._start_haproxy()
        else:
            self.port = self.instance_ports[0]

    def _instance_env(self, instances):
        """The instances' whole environment: the caller's without any FLASHSALE_* or MONGO_URI, plus the crowd's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_") and k != "MONGO_URI"}
        env.update({
            "FLASHSALE_JWT_SECRET": JWT_SECRET,
            "FLASHSALE_SHUTDOWN_DELAY_SECONDS": "0",
            "FLASHSALE_DATA_KEY": base64.b64encode(os.urandom(32)).decode(),
            "FLASHSALE_RATE_LIMIT_CUSTOMER": "0",
            "FLASHSALE_RATE_LIMIT_ADDRESS": "0",
            "FLASHSALE_LOG_LEVEL": "error",
        })
        if instances > 1 and self.fleet_order_delay_ms:
            env["FLASHSALE_FLEET_ORDER_DELAY_MS"] = str(self.fleet_order_delay_ms)
        if instances > 1:
            # haproxy stamps every request's arrival (X-Request-Start, overwritten): the instances order their
            # customers across the fleet by the time the one front door read them (docs/how-an-order-is-decided.md).
            env["FLASHSALE_TRUST_REQUEST_START"] = "true"
            # ... from haproxy only, on this host: its X-Forwarded-For and X-Request-Start are believed.
            env["FLASHSALE_TRUSTED_PROXIES"] = "127.0.0.1/32"
        env.update(self.server_env)
        return env

    def _start_haproxy(self):
        workdir = self.workdir
        config = os.path.join(workdir, "haproxy.cfg")
        with open(config, "w") as handle:
            handle.write(self.haproxy_config_text())
        self.haproxy = self.procs.start("haproxy", ["haproxy", "-f", config, "-db"], workdir)
        if not wait_until(lambda: request(self.port, "GET", "/readyz", timeout=2)[0] == 200, 15):
            raise RuntimeError("haproxy did not come up (see %s/haproxy.log)" % workdir)
        with open(os.path.join(workdir, "haproxy.log"), errors="replace") as handle:
            self.haproxy_warnings = [line.strip() for line in handle if "ALERT" in line or "WARNING" in line]

    def haproxy_config_text(self):
        # maxconn 9000: haproxy reserves 2 fds per connection and the hard fd limit here is 20,000
        # (maxconn 20000 makes it refuse to start); 9000 is still 9x the crowd's 1,000 connections.
        # Above that (the open loop's 10,000 idle-most-of-the-time clients) haproxy only starts with
        # `no strict-limits`, and `http-reuse always` lets those clients share a few server-side
        # connections, so the fds actually used stay near one per client (sampled during the run).
        # Each server then gets a maxconn of its own so that a closed loop through haproxy (the ceiling)
        # queues in haproxy instead of running out of fds.
        maxconn = self.haproxy_maxconn
        hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        over_limit = 2 * maxconn + 300 > hard_nofile
        server_maxconn = (" maxconn %d" % max(100, (hard_nofile - maxconn - 500) // len(self.instance_ports))
                          if over_limit else "")
        # One log line per request (to haproxy's stdout, haproxy.log): when haproxy had read the request
        # (microseconds), its queue and connect times to the instance (ms) and the Idempotency-Key, so
        # that the crowd's report can say in what order the front handed the customers over (front_order).
        return haproxy_config(
            self.port, self.instance_ports,
            global_lines=["maxconn %d" % maxconn, "log stdout format raw local0 info"]
            + (["no strict-limits"] if over_limit else []),
            defaults_lines=["log global", "option http-keep-alive", "timeout connect 5s", "timeout client 60s",
                            "timeout server 60s", "timeout http-keep-alive 60s", "timeout http-request 60s",
                            "timeout queue 60s"],
            frontend_lines=["maxconn %d" % maxconn, "option forwardfor",
                            "http-request set-var(txn.rx) date(0,us)",
                            "http-request set-header X-Request-Start t=%[var(txn.rx)]",
                            "http-request capture req.hdr(Idempotency-Key) len 24",
                            'log-format "FRONT %[var(txn.rx)] %Tw %Tc %hr %s"'],
            backend_lines=["http-reuse always"] if over_limit else [],
            server_options=server_maxconn)

    def cpu(self):
        named = [("redis", self.redis)] + [("instance-%d" % i, p) for i, p in enumerate(self.instances)]
        if self.haproxy:
            named.append(("haproxy", self.haproxy))
        return {name: cpu_seconds(child.pid) for name, child in named}

    def stop(self):
        for child in ([self.haproxy] if self.haproxy else []) + list(reversed(self.instances)) + ([self.redis] if self.redis else []):
            self.procs.stop(child)
