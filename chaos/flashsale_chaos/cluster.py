"""Redis Cluster for the chaos suite: three masters with a replica each, real `redis-server`s on loopback, each
node in a directory of its own (nodes sharing one with AOF on delete each other's files on a rewrite), ports
below 55535 (the cluster bus listens on port + 10000). And the cluster's two faults: a live sale's slot
migrated mid-sale, and the sale's master killed."""

import os
import socket
import time

from .clients import redis_call, wait_until

SLOTS = 16384


def crc16(data):
    """CRC16/XMODEM, as the Redis Cluster specification hashes keys."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key):
    """The key's slot: of its hash tag (the text between the first `{` and the next `}`, when not empty)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc16(data) % SLOTS


def sale_slot(sale):
    return slot("fs:{%s}:meta" % sale)


def _free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def node_port(taken):
    """A port in 21000-44999 whose bus port (+10000) is free too, not in `taken` (bounded: 2,000 tries)."""
    for attempt in range(2000):
        port = 21000 + (os.getpid() * 7 + attempt * 13) % 24000
        if port not in taken and port + 10000 not in taken and _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """Started by a `Topology` with `cluster=True`: nodes through its `_start_redis`, so they stop with it."""

    def __init__(self, topology, masters=3, replicas_per_master=1):
        self.topology = topology
        self.processes = {}  # port -> Process
        ports = []
        for index in range(masters * (1 + replicas_per_master)):
            port = node_port(ports)
            ports.append(port)
            directory = os.path.join(topology.workdir, "node-%d" % index)
            os.makedirs(directory, exist_ok=True)
            self.processes[port] = topology._start_redis(
                "node-%d" % index, port, directory,
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000"])
        self.master_ports, self.replica_ports = ports[:masters], ports[masters:]
        self.ids = {port: redis_call(port, "CLUSTER", "MYID") for port in ports}
        for port in ports[1:]:
            redis_call(ports[0], "CLUSTER", "MEET", "127.0.0.1", port)
        share = SLOTS // masters
        for index, port in enumerate(self.master_ports):
            end = SLOTS - 1 if index == masters - 1 else (index + 1) * share - 1
            redis_call(port, "CLUSTER", "ADDSLOTSRANGE", index * share, end)
        for index, port in enumerate(self.replica_ports):
            master = self.master_ports[index % masters]
            if not wait_until(lambda: redis_call(port, "CLUSTER", "REPLICATE", self.ids[master]) == "OK", 20):
                raise RuntimeError("node %d could not follow %d" % (port, master))
        if not self.healthy(20):
            raise RuntimeError("the cluster did not come up")

    def healthy(self, timeout):
        """Every running node says cluster_state:ok, and every running replica is in sync."""
        def ok():
            for port, process in self.processes.items():
                if not process.alive:
                    continue
                if "cluster_state:ok" not in redis_call(port, "CLUSTER", "INFO", timeout=1.0):
                    return False
                role = redis_call(port, "ROLE", timeout=1.0)
                if role[0] == "slave" and role[3] != "connected":
                    return False
            return True
        return wait_until(ok, timeout, 0.1)

    @property
    def seeds(self):
        return ",".join("127.0.0.1:%d" % port for port in self.master_ports)

    def owner(self, slot_number):
        """The port of the master that owns the slot, per the first running node that answers."""
        for port, process in self.processes.items():
            if not process.alive:
                continue
            try:
                for start, end, master, *_ in redis_call(port, "CLUSTER", "SLOTS", timeout=1.0):
                    if int(start) <= slot_number <= int(end):
                        return int(master[1])
            except Exception:  # noqa: BLE001 - ask the next node
                continue
        raise RuntimeError("no node names the owner of slot %d" % slot_number)

    def migrate(self, slot_number, target, pause=0.05):
        """The slot to `target` as `redis-cli --cluster reshard` moves it, one key per MIGRATE and `pause` s
        between them (a reshard under load), then `SETSLOT NODE` on every master. Answers the keys moved."""
        source = self.owner(slot_number)
        redis_call(target, "CLUSTER", "SETSLOT", slot_number, "IMPORTING", self.ids[source])
        redis_call(source, "CLUSTER", "SETSLOT", slot_number, "MIGRATING", self.ids[target])
        moved = 0
        for _ in range(10000):  # bounded: a sale has 17 keys
            keys = redis_call(source, "CLUSTER", "GETKEYSINSLOT", slot_number, 1)
            if not keys:
                break
            redis_call(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(pause)
        for port in set(self.master_ports + self.replica_ports):
            if self.processes[port].alive and redis_call(port, "ROLE")[0] == "master":
                redis_call(port, "CLUSTER", "SETSLOT", slot_number, "NODE", self.ids[target])
        return moved


# The faults (`t` is the Topology).

def reshard_sale(t):
    """The live sale's slot moves to another master mid-sale, key by key, 50 ms apart."""
    number = sale_slot(t.sale)
    source = t.cluster.owner(number)
    target = next(port for port in t.cluster.master_ports if port != source)
    began = time.monotonic()
    t.observed["reshard"] = {"slot": number, "from": source, "to": target,
                             "keys": t.cluster.migrate(number, target),
                             "seconds": 0.0}
    t.observed["reshard"]["seconds"] = round(time.monotonic() - began, 2)


def resharded(t, history, stocklog):
    reshard = t.observed.get("reshard") or {}
    now = t.cluster.owner(reshard["slot"]) if reshard else None
    refused = sum(1 for a in history.attempts if a["status"] in (503, "unknown"))
    return bool(reshard) and reshard["keys"] > 0 and now == reshard["to"], (
        "slot %s of the sale moved from port %s to %s: %s keys in %s s (its owner now %s); %d requests answered 503 "
        "or unknown" % (reshard.get("slot"), reshard.get("from"), reshard.get("to"), reshard.get("keys"),
                        reshard.get("seconds"), now, refused))


def kill_sale_master(t):
    """SIGKILL the master that owns the sale's slot; the cluster promotes its replica (node timeout 1 s)."""
    number = sale_slot(t.sale)
    before = t.cluster.owner(number)
    t.observed["killedMaster"] = before
    began = time.monotonic()
    t.cluster.processes[before].kill()
    if wait_until(lambda: t.cluster.owner(number) != before, 20, 0.05):
        t.observed["promotedAfterSeconds"] = round(time.monotonic() - began, 2)


def restart_old_master(t):
    """The killed master comes back on its data and rejoins as a replica of the promoted one."""
    port = t.observed.get("killedMaster")
    if port is None:
        return
    t.cluster.processes[port].start()
    if wait_until(lambda: redis_call(port, "ROLE")[0] == "slave", 20, 0.1) and t.cluster.healthy(20):
        t.observed["oldMasterRole"] = "replica"


def master_failed_over(t, history, stocklog):
    promoted, killed = t.observed.get("promotedAfterSeconds"), t.observed.get("killedMaster")
    now = t.cluster.owner(sale_slot(t.sale))
    return promoted is not None and now != killed, (
        "the sale's master (port %s) was killed; its replica (port %d) was promoted %s s later; the old master "
        "rejoined as %s" % (killed, now, promoted, t.observed.get("oldMasterRole") or "nothing yet"))
