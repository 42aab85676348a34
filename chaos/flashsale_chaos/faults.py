"""The faults: what each scenario does to its topology `t` while the sale runs (inject), and how it heals.
Each function is bounded (fixed sleeps, waits with timeouts); `t.observed` keeps what an effect probe needs."""

import json
import os
import signal
import subprocess
import time

from . import LEASE_TTL_SECONDS, ROOT
from .clients import pairs, redis_call, request, token, wait_until


def sleep(seconds):
    time.sleep(seconds)


def units_leased_to(t, instance):
    """Units the ledger has leased to `instance` right now (its shards' `r`)."""
    leases = pairs(redis_call(t.primary_port, "HGETALL", "fs:{%s}:leases" % t.sale, timeout=1.0))
    return sum(lease["r"] for lease in map(json.loads, leases.values()) if lease.get("o") == instance)


def kill_instance(t):
    # As for a pause: the kill strands units in the ledger only when chaos-0 holds some (at most 3 s wait).
    wait_until(lambda: units_leased_to(t, "chaos-0") > 0, 3.0, interval=0.01)
    t.observed["unitsHeldWhenPaused"] = units_leased_to(t, "chaos-0")
    t.instances[0].kill()


def heads(t):
    """The arrival (microseconds) of each instance's first waiting customer as the ledger keeps it for the
    fleet's order (`head:<instance>` in the sale's stats, see acquire_lease.lua)."""
    stats = pairs(redis_call(t.primary_port, "HGETALL", "fs:{%s}:stats" % t.sale, timeout=1.0))
    found = {}
    for name, value in stats.items():
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        if name.startswith("head:"):
            found[name[5:]] = int(value.split(":")[0])
    return found


def kill_head_holder(t):
    # Under the fleet order delay, the others' customers who arrived later wait while chaos-0's first waiting
    # customer is the fleet's earliest head: kill chaos-0 at such a moment (at most 5 s wait), so that the
    # others must stop waiting for a customer nobody will serve (a head not refreshed for 500 ms is dropped).
    seen = {}

    def earliest_is_chaos0():
        found = heads(t)
        if "chaos-0" in found and found["chaos-0"] == min(found.values()):
            seen.update(found)
            return True
        return False
    wait_until(earliest_is_chaos0, 5.0, interval=0.002)
    t.observed["killedAtMs"] = int(time.time() * 1000)
    t.instances[0].kill()
    # the heads as last read before the kill: chaos-0's the earliest, or (the wait timed out) empty
    t.observed["headsWhenKilled"] = seen


def restart_instance_0(t):
    t.restart_instance(0)


def pause_instance(t):
    # Fencing is exercised only when the paused instance holds units: leases sized to demand come and go
    # within a few renewals, so wait (at most 3 s) for a moment when chaos-0 holds some.
    wait_until(lambda: units_leased_to(t, "chaos-0") > 0, 3.0, interval=0.01)
    t.instances[0].signal(signal.SIGSTOP)
    t.observed["unitsHeldWhenPaused"] = units_leased_to(t, "chaos-0")
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




def rolling_upgrade(t):
    """Each instance in turn: SIGTERM (it reports unready at once, serves through its shutdown delay while the
    balancer's checks notice, then drains and exits), started again, and the next one only once the balancer
    sends to the new one, as a Deployment's rolling update waits for readiness."""
    replaced = []
    for index, process in enumerate(t.instances):
        old_pid, began = process.popen.pid, time.monotonic()
        process.stop(grace=30)
        stopped = time.monotonic() - began
        t.restart_instance(index)
        back = wait_until(lambda: t.haproxy_servers()["i%d" % index]["status"] == "UP", 15, 0.05)
        replaced.append({"instance": index, "oldPid": old_pid, "newPid": process.popen.pid,
                         "stopSeconds": round(stopped, 2), "backInBalancer": back})
    t.observed["replaced"] = replaced
    t.observed["balancer"] = t.haproxy_servers()


def planned_failover(t):
    """The hand-over the Redis pods' preStop hook performs (k8s/components/redis/redis-prestop.sh, run as it is):
    the primary pauses writes, waits for its replicas to hold them, asks a Sentinel for `SENTINEL FAILOVER`,
    and turns itself into a replica of the member the Sentinels name."""
    before, began = t.primary_port, time.monotonic()
    t.observed["oldPrimary"] = before
    env = dict(os.environ, REDIS_PORT=str(before), REDIS_ADDRESS="127.0.0.1", POD_NAME="chaos-redis",
               REDIS_MASTER_NAME="flashsale", REDIS_HANDOVER_SECONDS="20",
               REDIS_SENTINELS=",".join("127.0.0.1:%d" % port for _, port in t.sentinels))
    done = subprocess.run(["sh", os.path.join(ROOT, "k8s/components/redis/redis-prestop.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    t.observed["handOver"] = (done.stdout + done.stderr).strip().replace("\n", " / ")
    observe_promotion(t, before, began)


def unpaused_failover(t):
    """`SENTINEL FAILOVER` alone: the old primary keeps taking writes until the Sentinels reconfigure it."""
    before, began = t.primary_port, time.monotonic()
    t.observed["oldPrimary"] = before
    redis_call(t.sentinels[0][1], "SENTINEL", "FAILOVER", "flashsale")
    observe_promotion(t, before, began)


def observe_promotion(t, before, began):
    """Waits (at most 20 s) until the Sentinels name another primary than `before`; keeps how long it took."""
    if wait_until(lambda: t.primary_port != before, 20, 0.05):
        t.observed["promotedAfterSeconds"] = round(time.monotonic() - began, 2)


def old_primary_demoted(t):
    """Heal: waits (at most 20 s) until the old primary serves as a replica, so the window ends with the
    topology whole again."""
    port = t.redis_port
    if wait_until(lambda: redis_call(port, "ROLE")[0] == "slave", 20, 0.1):
        t.observed["oldPrimaryRole"] = "replica"


def evalsha_calls(port):
    stats = redis_call(port, "INFO", "commandstats") or ""
    for line in stats.splitlines():
        if line.startswith("cmdstat_evalsha:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def isolate_primary(t):
    """The primary cut from its replicas, the Sentinels and two instances (every path through its proxy
    but chaos-0's); the Sentinels promote a replica (down-after 1 s, then the election) while chaos-0 still
    reaches the old primary. Held 2 s after the promotion, so chaos-0 keeps trying to commit there."""
    calls_before = evalsha_calls(t.redis_port)  # the harness reads the primary on its own port, not the proxy's
    began = time.monotonic()
    t.observed["connectionsCut"] = t.proxy.cut(spare_pid=t.instances[0].popen.pid)
    if wait_until(lambda: t.primary_port != t.primary_address, 20, 0.05):
        t.observed["promotedAfterSeconds"] = round(time.monotonic() - began, 2)
    sleep(2.0)
    t.observed["isolatedPrimaryScriptCalls"] = evalsha_calls(t.redis_port) - calls_before
    t.observed["isolatedPrimaryRole"] = redis_call(t.redis_port, "ROLE")[0]


def heal_isolation(t):
    t.proxy.heal()
    old_primary_demoted(t)


def slow_redis(t):
    """50 ms more on every Redis round trip (25 ms each way through the proxy) for 5 s."""
    t.proxy.delay = 0.025
    began = time.monotonic()
    redis_call(t.proxy.port, "PING", timeout=2)
    t.observed["pingMsDuringFault"] = round((time.monotonic() - began) * 1000, 1)
    sleep(5.0)


def fast_redis(t):
    t.proxy.delay = 0.0


def slow_mongo(t):
    """Every MongoDB command answered after 2 s, for 10 s."""
    t.mongo_op({"op": "delayReply", "command": "*", "milliseconds": 2000, "times": -1})
    sleep(10.0)


def fast_mongo(t):
    t.observed["mongoDelayedReplies"] = t.mongo_op({"op": "clear", "kind": "delayReply"}).get("uses", {}).get("delayReply", 0)
