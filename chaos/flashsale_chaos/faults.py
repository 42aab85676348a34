"""The faults: what each scenario does to its topology `t` while the sale runs (inject), and how it heals.
Each function is bounded (fixed sleeps, waits with timeouts); `t.observed` keeps what an effect probe needs."""

import json
import signal
import time

from . import LEASE_TTL_SECONDS
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


