"""The scenarios: a fault and its heal (see `faults`), the topology and workload they need, and the probe
that shows the fault took effect. Every scenario must also stay live (its sale sells out after healing,
see `checker.liveness`); the control scenario reports that, like its lost orders, without failing on it."""

from . import LEASE_TTL_SECONDS
from .cluster import kill_sale_master, master_failed_over, reshard_sale, resharded, restart_old_master
from .faults import (cut_redis, fast_mongo, fast_redis, heal_isolation, heal_redis, isolate_primary, kill_head_holder,
                     kill_instance, kill_primary, kill_redis, mongo_down_observed, mongo_up, nothing, old_primary_demoted,
                     pause_instance, planned_failover, rebalance_and_drain, rejoin_old_primary, restart_instance_0,
                     restart_instance_1, restart_redis, resume_instance, rolling_upgrade, slow_mongo, slow_redis,
                     unpaused_failover)


class Scenario:
    """`effect(topology, history, stocklog)` answers (took effect?, evidence): a fault that changed nothing
    proves nothing, so a scenario passes only when its fault demonstrably happened. `history` holds the
    workload's attempts only: the liveness sweep runs after healing and is no evidence of the fault."""

    def __init__(self, name, description, inject, heal=None, topology=None, workload=None, control=False, effect=None,
                 targets=None):
        self.name, self.description, self.inject, self.heal = name, description, inject, heal
        self.topology = topology or {}
        self.workload = workload or {}
        self.control = control
        self.effect = effect
        # Availability the scenario must reach (see `availability`): {"firstAttempts": 0.9999, ...}.
        self.targets = targets or {}


# Effect probes: evidence that each fault happened and mattered.

def leases_expired_of(instance):
    def probe(t, history, stocklog):
        expired = [e for e in stocklog if e.get("reason") == "lease_expired" and e.get("instance") == instance]
        return bool(expired), "%d leases of %s expired in the ledger" % (len(expired), instance)
    return probe


def paused(instance):
    """A paused or killed instance shows in the ledger when it held units (its leases expire there), and
    in the history when customers were routed to it: their requests stall until it resumes (answered after
    more than one lease TTL) or fail (unknown, 502 from haproxy when the instance died mid-answer, 503 or 504).
    Leases sized to demand can leave the instance holding nothing at that instant, so either is evidence."""
    def probe(t, history, stocklog):
        expired, lease_evidence = leases_expired_of(instance)(t, history, stocklog)
        stalled = sum(1 for a in history.attempts
                      if a["status"] in (502, 503, 504, "unknown") or a.get("latency", 0) > LEASE_TTL_SECONDS)
        return expired or stalled > 0, "%s (%s units leased to it when the fault hit); %d requests stalled" % (
            lease_evidence, t.observed.get("unitsHeldWhenPaused", "?"), stalled)
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


def head_abandoned(t, history, stocklog):
    """chaos-0 was killed holding the fleet's earliest head, and the other instances were leased units after
    it: they did not wait for the dead instance's customer for good (its head is dropped once 500 ms old)."""
    found, killed = t.observed.get("headsWhenKilled") or {}, t.observed.get("killedAtMs")
    earliest = "chaos-0" in found and found["chaos-0"] == min(found.values())
    after = sorted(int(e["at"]) for e in stocklog if e.get("reason") == "lease_granted" and e.get("instance") != "chaos-0"
                   and killed is not None and int(e.get("at") or 0) > killed)
    first = (after[0] - killed) if after else None
    return earliest and bool(after), ("chaos-0 %s when killed (heads: %s); the others were leased units %d times after, "
                                      "the first %s ms after the kill"
                                      % ("held the fleet's earliest head" if earliest else "never held the earliest head",
                                         ", ".join("%s %s" % kv for kv in sorted(found.items())) or "none", len(after), first))


def load_shed(t, history, stocklog):
    shed = sum(1 for a in history.attempts if a["status"] in (429, 503))
    return shed > 0, "%d requests shed with 429/503" % shed


def rolled(t, history, stocklog):
    replaced = t.observed.get("replaced", [])
    downs = {name: server["downs"] for name, server in t.observed.get("balancer", {}).items()}
    every = len(replaced) == len(t.instances) and all(r["newPid"] != r["oldPid"] and r["backInBalancer"] for r in replaced)
    return every, (
        "replaced one by one: %s; the balancer took each out on its failing /readyz (UP->DOWN: %s)" % (
            ", ".join("chaos-%d stopped in %.2f s" % (r["instance"], r["stopSeconds"]) for r in replaced) or "none",
            ", ".join("%s %d" % kv for kv in sorted(downs.items())) or "-"))


def failed_over(t, history, stocklog):
    promoted, demoted = t.observed.get("promotedAfterSeconds"), t.observed.get("oldPrimaryRole")
    return promoted is not None and demoted == "replica", (
        "a replica was promoted %s s after the failover began (primary now port %d, was %s); the old primary is %s%s" % (
            promoted, t.primary_port, t.observed.get("oldPrimary"), demoted or "still not a replica",
            "; redis-prestop.sh: %s" % t.observed["handOver"] if t.observed.get("handOver") else ""))


def primary_isolated(t, history, stocklog):
    promoted, calls = t.observed.get("promotedAfterSeconds"), t.observed.get("isolatedPrimaryScriptCalls", 0)
    return promoted is not None and calls > 0 and t.observed.get("oldPrimaryRole") == "replica", (
        "%s connections cut; a replica was promoted %s s after the cut; chaos-0 ran %d ledger scripts on the isolated "
        "primary (its role then: %s), which became a replica after healing: %s" % (
            t.observed.get("connectionsCut"), promoted, calls, t.observed.get("isolatedPrimaryRole"),
            t.observed.get("oldPrimaryRole") or "no"))


def redis_slowed(t, history, stocklog):
    ping = t.observed.get("pingMsDuringFault") or 0
    return ping >= 50, "a PING through the proxy took %.1f ms during the fault" % ping


def mongo_slowed(t, history, stocklog):
    delayed = t.observed.get("mongoDelayedReplies", 0)
    return delayed > 0, "%d MongoDB replies held for 2 s" % delayed


# Steady load across a longer fault: customers arrive over 15 s, more stock than they buy (the sweep sells the rest).
STEADY = {"customers": 1800, "arrivalSeconds": 15.0, "stock": 2500, "seconds": 35}

SCENARIOS = [
    Scenario("kill-instance", "SIGKILL an instance mid-sale, restart it", kill_instance, restart_instance_0,
             workload={"stock": 600}, effect=paused("chaos-0")),
    Scenario("kill-head-holder", "with the 200 ms fleet order delay, SIGKILL an instance while its waiting customer is "
             "the earliest head of the fleet's order, restart it", kill_head_holder, restart_instance_0,
             topology={"fleet_order_delay_ms": 200}, workload={"stock": 1200}, effect=head_abandoned),
    Scenario("pause-instance", "SIGSTOP an instance for twice the lease TTL, then SIGCONT (fencing)",
             pause_instance, resume_instance, workload={"stock": 600}, effect=paused("chaos-0")),
    Scenario("kill-redis", "SIGKILL Redis, restart it on its AOF (appendfsync always)", kill_redis, restart_redis,
             effect=requests_refused),
    Scenario("partition", "cut every instance-Redis connection for 3 s", cut_redis, heal_redis, effect=requests_refused),
    Scenario("sentinel-failover", "SIGKILL the primary of 2 replicas; Sentinel promotes one; commits wait for 1 replica ack",
             kill_primary, rejoin_old_primary, topology={"sentinel": True}, effect=primary_moved),
    Scenario("mongo-down", "MongoDB unreachable for 4 s, then back", mongo_down_observed, mongo_up, effect=outbox_failed),
    Scenario("rebalance-drain", "rebalance, then drain and stop an instance mid-sale (SIGTERM), restart it",
             rebalance_and_drain, restart_instance_1, effect=leases_returned_by("chaos-1")),
    Scenario("clock-offset", "instances 1 and 2 run with wall clocks 20 s ahead and 25 s behind, with the 200 ms fleet "
             "order delay (which reads the arrivals' clocks)",
             nothing, topology={"offsets": {1: 20_000, 2: -25_000}, "fleet_order_delay_ms": 200}, effect=clock_skewed),
    Scenario("overload", "8,000 customers on 400 connections, far above the admitted 300 req/s: shed, stay correct",
             nothing, topology={"rate_limits": True}, workload={"customers": 8000, "workers": 400, "stock": 1500},
             effect=load_shed),
    Scenario("rolling-upgrade", "replace the three instances one by one (SIGTERM, 2 s shutdown delay, restart) "
             "behind an L4 balancer that never re-sends, under steady load", rolling_upgrade,
             topology={"l4": True, "shutdown_delay": 2}, workload=STEADY, effect=rolled,
             targets={"firstAttempts": 0.9999, "intentsAnswered": 1.0}),
    Scenario("planned-failover", "mid-sale, the Redis pods' preStop hand-over (redis-prestop.sh: pause writes, WAIT, "
             "SENTINEL FAILOVER, the old primary becomes a replica); the instances follow the new primary",
             planned_failover, old_primary_demoted, topology={"sentinel": True}, workload=STEADY, effect=failed_over,
             targets={"firstAttempts": 0.999, "intentsAnswered": 1.0}),
    Scenario("primary-isolated", "the primary cut from its replicas, the Sentinels and two instances while chaos-0 "
             "still reaches it; a replica is promoted; commits wait for 1 replica ack", isolate_primary, heal_isolation,
             topology={"sentinel": True, "isolatable": True}, workload=STEADY, effect=primary_isolated),
    Scenario("slow-redis", "50 ms added to every Redis round trip for 5 s", slow_redis, fast_redis, workload=STEADY,
             effect=redis_slowed, targets={"firstAttempts": 1.0, "intentsAnswered": 1.0}),
    Scenario("slow-mongo", "MongoDB answers every command after 2 s, for 10 s", slow_mongo, fast_mongo, workload=STEADY,
             effect=mongo_slowed, targets={"firstAttempts": 1.0, "intentsAnswered": 1.0}),
    Scenario("cluster-reshard", "Redis Cluster (3 masters, a replica each): the live sale's slot migrates to another "
             "master mid-sale, key by key (MIGRATE, 50 ms apart); the instances follow ASK, TRYAGAIN and MOVED",
             reshard_sale, topology={"cluster": 1}, workload=STEADY, effect=resharded),
    # Two replicas per master: with one replica ack required, commits go on after the promotion while the other
    # replica remains (with one replica they would stop until the old master rejoined, as in sentinel-failover).
    Scenario("cluster-failover", "Redis Cluster (3 masters, two replicas each): SIGKILL the sale's master; the cluster "
             "promotes a replica; commits wait for 1 replica ack; the old master rejoins as a replica",
             kill_sale_master, restart_old_master, topology={"cluster": 2}, workload=STEADY, effect=master_failed_over),
    Scenario("control-failover-unpaused", "CONTROL: SENTINEL FAILOVER alone, without the hand-over's write pause",
             unpaused_failover, old_primary_demoted, topology={"sentinel": True}, workload=STEADY, control=True,
             effect=failed_over),
    Scenario("control-kill-redis-no-aof", "CONTROL: SIGKILL Redis running without AOF (RDB every second), restart",
             kill_redis, restart_redis, topology={"durable": False}, control=True, effect=requests_refused),
]
