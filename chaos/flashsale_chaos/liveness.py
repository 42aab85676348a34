"""Liveness: after the fault healed and the workload ended, the sale sells out with every unit accounted for.

A bounded sweep of fresh customers (`sweep-00001`, `sweep-00002`, ...: one Idempotency-Key each, quantity 1,
through haproxy, retried on 429/503/unknown outcomes and done on 202 exactly like the workload's customers,
see `workload.run_customer`) keeps ordering until the ledger says `sold == stock` and the sale is closed with
reason `sold_out` (or closed `ended`: the sale reached its end). It sends customers only for units nobody
claims yet (unsold units minus the units of waitlisted customers, whom the ledger serves as units free up,
minus the sweep customers in flight), at most SWEEP_WORKERS at once and at most 2 x the units unsold at its
start + 64 customers (SWEEP_MAX_CUSTOMERS in all).

The deadline is LIVENESS_DEADLINE_SECONDS = 3 lease TTLs + 10 s = 16 s from the start of the sweep: a lease
whose holder died, was fenced or closed its bucket expires within one TTL and is reclaimed by the next ledger
call; the 10 s are for the sweep's own requests. A sale still unsold then is not live: the verdict names the
stranded units, the pool, the waitlist and the lease table, read in one MULTI/EXEC at the deadline (before the
instances stop and give their leases back). The sweep's attempts go into the scenario's history, so the
checker checks them like every other request.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor

from . import LEASE_TTL_SECONDS
from .clients import Redis, pairs
from .workload import run_customer

LIVENESS_DEADLINE_SECONDS = 3 * LEASE_TTL_SECONDS + 10.0
SWEEP_WORKERS = 32
SWEEP_MAX_CUSTOMERS = 3000
POLL_SECONDS = 0.2


def read_sale(port, sale):
    """The sale as the ledger holds it, read atomically: status, closed reason, stock, pool, sold, the leases
    (each with its shard id), the waitlist (customers and units) and the Redis time in milliseconds."""
    key = "fs:{%s}:%%s" % sale
    client = Redis(port)
    try:
        client("MULTI")
        for command in (("HGETALL", key % "meta"), ("GET", key % "pool"), ("GET", key % "sold"),
                        ("HGETALL", key % "leases"), ("HVALS", key % "waiters"), ("TIME",)):
            client(*command)
        meta, pool, sold, leases, waiters, now = client("EXEC")
    finally:
        client.close()
    meta = pairs(meta)
    waiting = [json.loads(waiter) for waiter in waiters or []]
    return {
        "status": meta.get("status") or "missing",
        "reason": meta.get("closedReason") or "",
        "pool": int(pool or 0),
        "sold": int(sold or 0),
        "leases": [dict(json.loads(record), shard=shard) for shard, record in sorted(pairs(leases).items())],
        "waiting": len(waiting),
        "waitingUnits": sum(int(waiter.get("q", 1)) for waiter in waiting),
        "nowMs": int(now[0]) * 1000 + int(now[1]) // 1000,
    }


def settled(state, stock):
    """Sold out and closed for it, or closed because the sale reached its end."""
    if state["status"] != "closed":
        return False
    return (state["reason"] == "sold_out" and state["sold"] == stock) or state["reason"] == "ended"


def liveness(topology, sale, stock, history, deadline_seconds=LIVENESS_DEADLINE_SECONDS, workers=SWEEP_WORKERS):
    """Sweeps until the sale settles or the deadline passes. Answers `{live, reason, seconds, deadlineSeconds,
    customers, requests, leaseTable}`; never raises (an unreadable ledger is a liveness failure)."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    recorded = len(history.attempts)
    customers, allowed, in_flight = 0, None, []
    state, error = None, None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while True:  # bounded by the deadline
            try:
                state, error = read_sale(topology.primary_port, sale), None
            except Exception as failure:  # noqa: BLE001 - an unreadable ledger is "not yet", until the deadline
                error = "%s: %s" % (type(failure).__name__, failure)
            if (error is None and settled(state, stock)) or time.monotonic() >= deadline:
                break
            if error is None:
                if allowed is None:
                    allowed = min(SWEEP_MAX_CUSTOMERS, 2 * max(0, stock - state["sold"]) + 64)
                in_flight = [future for future in in_flight if not future.done()]
                unclaimed = stock - state["sold"] - state["waitingUnits"] - len(in_flight)
                for _ in range(max(0, min(unclaimed, workers - len(in_flight), allowed - customers))):
                    customers += 1
                    in_flight.append(pool.submit(run_customer, topology.lb_port, sale, "sweep-%05d" % customers, 1,
                                                 history, deadline))
            time.sleep(POLL_SECONDS)
        seconds = time.monotonic() - started
        # Leaving the pool waits for the customers in flight; none starts an attempt after the deadline.
    outcome = {"live": error is None and settled(state, stock), "seconds": round(seconds, 1),
               "deadlineSeconds": deadline_seconds, "customers": customers,
               "requests": len(history.attempts) - recorded, "leaseTable": []}
    outcome["reason"] = verdict(state, error, stock, seconds, outcome)
    if not outcome["live"] and error is None:
        outcome["leaseTable"] = [{"shard": lease["shard"], "owner": lease.get("o"), "fence": lease.get("f"),
                                  "remaining": lease.get("r"),
                                  "expiresInSeconds": round((lease.get("e", 0) - state["nowMs"]) / 1000, 2)}
                                 for lease in state["leases"]]
        outcome["ledger"] = {k: state[k] for k in ("status", "reason", "pool", "sold", "waiting", "waitingUnits")}
    return outcome


def verdict(state, error, stock, seconds, outcome):
    sweep = "%d sweep customers, %d requests" % (outcome["customers"], outcome["requests"])
    if error is not None:
        return "liveness: the ledger could not be read after %.0f s (%s): %s" % (seconds, sweep, error)
    sale = state["status"] + (" (%s)" % state["reason"] if state["reason"] else "")
    if settled(state, stock):
        if state["reason"] == "ended":
            return "live: the sale reached its end with %d of %d sold after %.1f s of sweep (%s)" % (
                state["sold"], stock, seconds, sweep)
        return "live: sold out, %d of %d sold and the sale closed sold_out after %.1f s of sweep (%s)" % (
            state["sold"], stock, seconds, sweep)
    leases = ", ".join("%s r=%s f=%s expires %+.1f s" % (lease.get("o"), lease.get("r"), lease.get("f"),
                                                        (lease.get("e", 0) - state["nowMs"]) / 1000)
                       for lease in state["leases"])
    ledger = "pool=%d leases=[%s] waitlist=%d (%d units) sold=%d of %d, sale %s, after %.0f s (%s)" % (
        state["pool"], leases, state["waiting"], state["waitingUnits"], state["sold"], stock, sale, seconds, sweep)
    if state["sold"] < stock:
        return "liveness: %d units stranded: %s" % (stock - state["sold"], ledger)
    return "liveness: not closed sold_out: %s" % ledger
