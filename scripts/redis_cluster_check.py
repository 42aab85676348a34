#!/usr/bin/env python3
"""The ledger on Redis Cluster (`make test`), with the Kubernetes component's own scripts.

Nine Redis pods run k8s/components/redis-cluster/redis-cluster-start.sh and the create Job's cluster-create.sh
(the files themselves, by `sh`, with the environment of a pod: the component's `flashsale-redis-env` literals,
random ACL passwords, per-pod data directories that outlive restarts as PVCs do), each on a loopback address that
/etc/hosts gives its pod DNS name (lines marked `# redis-ha-check`, removed at exit). A real `flashsale serve`
is given the component's seeds (FLASHSALE_REDIS_CLUSTER_NODES) and logs in as the `flashsale` ACL user with one
replica ack per commit, while a client keeps ordering (one Idempotency-Key per order, retried on 503 and
network errors). Each step is bounded in time and prints one line with its figure:
  1. create: cluster-create.sh makes 3 masters with 2 replicas each, every node ok; run again, it changes nothing; the
     ACL in force (anonymous commands refused, the StatefulSet's readiness probe passing, flashsale confined to
     fs:* keys);
  2. orders flow through the service;
  3. the sale's master lost (SIGKILL): the cluster promotes its replica, orders continue (the longest time
     without a 201 is reported); the service's /readyz, asked every 200 ms meanwhile, answers 200 throughout
     (two masters of three answer: unready pods would take every sale out of the Service); the pod restarted
     alone rejoins as a replica;
  4. all nine restarted at once, each on a NEW address (as pods rescheduled get new IPs): the nodes find each
     other again by their names (the start script resolves nodes.conf's names), the cluster is ok, orders flow;
  5. no acknowledged order lost: every 201 reads back and is in the ledger of the sale's master, where
     pool + leased + sold == stock; the ACL refused the service nothing (no NOPERM in its log).
About 60 s (REDIS_CLUSTER_NODE_TIMEOUT_MS=2000). Needs root (/etc/hosts), redis-server and redis-cli.

    .venv/bin/python scripts/redis_cluster_check.py --bin .build/debug/flashsale
"""
import base64
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_ha import Failure, verify, wait  # noqa: E402
from redis_ha.orders import Service, free_port  # noqa: E402
from redis_ha.pods import ROOT, Hosts, Pod, cli  # noqa: E402
from redis_ha.verify import check  # noqa: E402

COMPONENT = os.path.join(ROOT, "k8s", "components", "redis-cluster")
PORT = 6379
PASSWORDS = ("REDIS_SERVICE_PASSWORD", "REDIS_REPLICATION_PASSWORD", "REDIS_EXPORTER_PASSWORD", "REDIS_ADMIN_PASSWORD")


def say(text):
    print("redis-cluster-check: " + text, flush=True)


def literals(name):
    """The KEY=VALUE literals of the component's configMapGenerator `name`."""
    with open(os.path.join(COMPONENT, "kustomization.yaml")) as f:
        for generator in yaml.safe_load(f).get("configMapGenerator") or []:
            if generator.get("name") == name:
                return dict(literal.split("=", 1) for literal in generator.get("literals") or [])
    raise Failure("k8s/components/redis-cluster/kustomization.yaml has no configMapGenerator %s" % name)


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class Nodes:
    """The pods, addressed 127.0.12.x (127.0.13.x after step 4's move)."""

    def __init__(self, work):
        self.env = literals("flashsale-redis-env")
        self.passwords = {name: secrets.token_hex(16) for name in PASSWORDS}
        self.files, self.logs = os.path.join(work, "files"), os.path.join(work, "logs")
        for d in (self.files, self.logs):
            os.makedirs(d)
        shutil.copy(os.path.join(COMPONENT, "redis.conf"), self.files)
        for tool in ("redis-server", "redis-cli"):
            if not shutil.which(tool):
                raise Failure("%s is not installed" % tool)
        seeds = [s for s in self.env["REDIS_CLUSTER_NODES"].split(",") if s]
        self.masters = int(self.env["REDIS_CLUSTER_MASTERS"])
        self.pods = []
        for i, seed in enumerate(seeds):
            name = seed.split(".")[0]
            data = {d: os.path.join(work, "pv", name, d) for d in ("data", "run")}
            for d in data.values():
                os.makedirs(d)
            env = dict(self.env, PATH=os.environ.get("PATH", "/usr/bin:/bin"), REDIS_FILES_DIR=self.files,
                       POD_NAME=name, REDIS_DATA_DIR=data["data"], REDIS_RUN_DIR=data["run"],
                       REDIS_CLUSTER_NODE_TIMEOUT_MS="2000", **self.passwords)
            self.pods.append(Pod(name, self.env["REDIS_SERVICE_NAME"], None, PORT,
                                 os.path.join(COMPONENT, "redis-cluster-start.sh"), env, self.logs))
        self.place("127.0.12")

    def place(self, prefix):
        """Gives every pod an address under `prefix` (its name resolves there through /etc/hosts)."""
        for i, pod in enumerate(self.pods):
            pod.address = "%s.%d" % (prefix, i + 1)
            pod.env["REDIS_BIND"] = pod.env["REDIS_ANNOUNCE_IP"] = pod.address
        self.hosts = Hosts([(pod.address, pod.host) for pod in self.pods])

    def admin(self, pod, *args, timeout=4.0):
        return cli(pod.host, PORT, *args, user="admin", password=self.passwords["REDIS_ADMIN_PASSWORD"], timeout=timeout)

    def create(self):
        env = dict(self.env, PATH=os.environ.get("PATH", "/usr/bin:/bin"), REDIS_CREATE_DEADLINE_SECONDS="60",
                   REDIS_ADMIN_PASSWORD=self.passwords["REDIS_ADMIN_PASSWORD"])
        try:
            done = subprocess.run(["sh", os.path.join(COMPONENT, "cluster-create.sh")], env=env, capture_output=True,
                                  text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise Failure("cluster-create.sh ran over 120 s")
        return done.returncode, (done.stdout + done.stderr).strip().replace("\n", " / ")

    def info(self, pod):
        _, out = self.admin(pod, "cluster", "info")
        return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)

    def role(self, pod):
        _, out = self.admin(pod, "role")
        return out.splitlines()

    def healthy(self):
        """Every pod says cluster_state:ok and knows all the others; REDIS_CLUSTER_MASTERS masters; every replica connected."""
        roles = [self.role(pod) for pod in self.pods]
        return (all(self.info(pod).get("cluster_state") == "ok" and self.info(pod).get("cluster_known_nodes") == str(len(self.pods))
                    for pod in self.pods)
                and sum(1 for r in roles if r[:1] == ["master"]) == self.masters
                and all(r[:1] == ["master"] or (len(r) >= 4 and r[0] == "slave" and r[3] == "connected") for r in roles))

    def owner(self, sale):
        """The master that holds the sale's keys now (its slot's owner), or None."""
        number = crc16(sale.encode()) % 16384
        for pod in self.pods:
            if pod.alive() and self.role(pod)[:1] == ["master"]:
                _, out = self.admin(pod, "cluster", "countkeysinslot", str(number))
                if out.strip() not in ("", "0"):
                    return pod
        return None

    def wait(self, what, predicate, timeout):
        return wait(what, predicate, timeout, lambda: "; ".join(
            "%s: %s" % (pod.name, " ".join(self.role(pod)[:1]) or "no answer") for pod in self.pods))

    def stop_all(self):
        for pod in self.pods:
            pod.stop()


class ClusterService(Service):
    """`flashsale serve` given the component's seeds, as the `flashsale` ACL user, one replica ack per commit."""

    def __init__(self, binary, work, nodes):  # noqa: super().__init__ reads the Sentinel component's settings
        self.binary, self.port, self.jwt = os.path.abspath(binary), free_port(), secrets.token_hex(32)
        self.log, self.proc = os.path.join(work, "logs", "flashsale-serve.log"), None
        config = {k: v for k, v in literals("flashsale-config").items() if k.startswith("FLASHSALE_REDIS_")}
        self.env = dict(config, PATH=os.environ.get("PATH", "/usr/bin:/bin"),
                        FLASHSALE_REDIS_PASSWORD=nodes.passwords["REDIS_SERVICE_PASSWORD"],
                        FLASHSALE_JWT_SECRET=self.jwt, FLASHSALE_SHUTDOWN_DELAY_SECONDS="0",
                        FLASHSALE_DATA_KEY=base64.b64encode(os.urandom(32)).decode(),
                        FLASHSALE_HOST="127.0.0.1", FLASHSALE_PORT=str(self.port), FLASHSALE_INSTANCE_ID="redis-cluster-check")


def probe(pod):
    """The readiness probe the StatefulSet declares, in the pod's environment, against the pod's address."""
    with open(os.path.join(COMPONENT, "redis-cluster.yaml")) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "StatefulSet"]
    command = objects[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    command = [part.replace("redis-cli", "redis-cli -h %s" % pod.address) for part in command]
    return subprocess.run(command, env=pod.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode


class ReadinessWatch:
    """Asks the service's /readyz every 200 ms on a thread of its own until stopped (bounded: 120 s); keeps each
    answer that was not 200, with its time."""

    def __init__(self, service):
        self.service, self.asked, self.refused = service, 0, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        deadline = time.monotonic() + 120
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                status, body = self.service.request("GET", "/readyz", timeout=2)
            except OSError as error:
                status, body = None, str(error)
            self.asked += 1
            if status != 200:
                self.refused.append((time.monotonic(), status, str(body)[:200]))
            self.done.wait(0.2)

    def stop(self):
        self.done.set()
        self.thread.join(5)


def run(nodes, service, state):
    # 1. Create, create again, ACL.
    for pod in nodes.pods:
        pod.start()
    began = time.monotonic()
    code, said = nodes.create()
    check(code == 0 and "created" in said, "cluster-create.sh exited %d: %s" % (code, said))
    _, took = nodes.wait("3 masters and 3 connected replicas, every node ok", nodes.healthy, 30)
    code, again = nodes.create()
    check(code == 0 and "nothing to do" in again, "cluster-create.sh on a created cluster exited %d: %s" % (code, again))
    first = nodes.pods[0]
    _, anonymous = cli(first.host, PORT, "ping")
    check(anonymous.startswith("NOAUTH"), "an anonymous PING answered %r" % anonymous)
    check(probe(first) == 0, "the StatefulSet's readiness probe failed on a live node")
    _, outside = cli(first.host, PORT, "set", "x", "y", user="flashsale", password=nodes.passwords["REDIS_SERVICE_PASSWORD"])
    check(outside.startswith("NOPERM"), "the flashsale user's SET outside fs:* answered %r" % outside)
    say("1. create: cluster-create.sh made %d masters and %d replicas, every node ok %.1f s after the start (%s); run "
        "again: %s; ACL: anonymous PING refused, the readiness probe passes, flashsale's SET outside fs:* refused (%s)"
        % (nodes.masters, len(nodes.pods) - nodes.masters, time.monotonic() - began, said.split(" / ")[-1], again,
           outside.split(" ")[0]))

    # 2. Orders.
    sale, customers, client, flowing = verify.orders_flowing(service, "cluster", state)
    master = nodes.owner(sale)
    check(master is not None, "no master holds the sale's keys")
    say("2. orders flow: %d acknowledged in %.1f s (sale %s, on %s)" % (len(client.acks), flowing,
                                                                         sale, master.name))

    # 3. The sale's master lost.
    watch = ReadinessWatch(service)
    lost = time.monotonic()
    marks = [(lost, "step 3")]
    master.stop()
    promoted, promotion = nodes.wait("the sale's slot served by a promoted replica",
                                     lambda: (lambda o: o if o is not None and o is not master else None)(nodes.owner(sale)), 30)
    promoted_at = time.monotonic()
    client.wait_flowing("orders after the promotion", promoted_at, 45)
    watch.stop()
    outage = client.gap(lost, promoted_at)
    check(watch.asked >= 5 and not watch.refused, "the service's /readyz during the failover: %d of %d not 200, the first "
          "%.1f s after the kill: %s" % (len(watch.refused), watch.asked, (watch.refused or [(lost, None, "")])[0][0] - lost,
                                         (watch.refused or [(0, None, "")])[0][1:]))
    master.start()
    _, rejoined = nodes.wait("%s rejoining as a replica" % master.name,
                             lambda: nodes.role(master)[:1] == ["slave"] and nodes.healthy(), 60)
    say("3. the sale's master lost (SIGKILL %s): %s promoted after %.1f s; orders continued, longest time without a "
        "201 %.1f s; /readyz 200 all along (%d asked); %s restarted alone rejoined as a replica in %.1f s"
        % (master.name, promoted.name, promotion, outage, watch.asked, master.name, rejoined))

    # 4. All restarted at once, on new addresses.
    down = time.monotonic()
    marks.append((down, "step 4"))
    nodes.stop_all()
    nodes.hosts.remove()
    nodes.place("127.0.13")
    nodes.hosts.add()
    for pod in nodes.pods:
        pod.start()
    _, took = nodes.wait("the cluster ok again after every pod restarted on new addresses", nodes.healthy, 90)
    for pod in nodes.pods:
        check("rejoins the cluster with its nodes.conf" in pod.text(), "%s did not start from its nodes.conf" % pod.name)
        check("CRITICAL" not in pod.text(), "%s's AOF load: %s" % (pod.name, next(
            (line for line in pod.text().splitlines() if "CRITICAL" in line), "")[:300]))
    back = time.monotonic()
    client.wait_flowing("orders after every pod restarted", back, 60)
    say("4. all %d restarted at once on new addresses (127.0.12.x -> 127.0.13.x): the cluster ok again after %.1f s "
        "(nodes found each other by name); orders flowing again, longest time without a 201 %.1f s"
        % (len(nodes.pods), took, client.gap(down, back)))

    # 5. No acknowledged order lost.
    owner = nodes.owner(sale)
    ids, stock, pool_units, sold, leased = verify.no_order_lost(service, client, customers, marks, sale, owner.host,
                                                                PORT, nodes.passwords["REDIS_SERVICE_PASSWORD"])
    say("5. no acknowledged order lost: %d orders acknowledged (201) read back 200 and are in %s's ledger; pool %d + "
        "leased %d + sold %d == stock %d (%d intents unresolved, %d retries)"
        % (len(ids), owner.name, pool_units, leased, sold, stock, client.unresolved, client.retries))
    state["promotion"], state["acknowledged"] = promotion, len(ids)


def build(work, binary):
    nodes = Nodes(work)
    return nodes, ClusterService(binary, work, nodes)


def main():
    return verify.main(__doc__, "redis-cluster-check", build, run, lambda state, seconds: (
        "%d orders acknowledged, 0 lost; the sale's master lost: promoted in %.1f s; %.0f s in all"
        % (state["acknowledged"], state["promotion"], seconds)))


if __name__ == "__main__":
    sys.exit(main())
