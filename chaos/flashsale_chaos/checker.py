"""The checks of a scenario's history against the ledger (Redis) and MongoDB, at quiescence:

  - confirmed units <= stock (no oversell), `sold` equal to the confirmed orders' units,
  - every acknowledged order (a 201) confirmed in the ledger and present in MongoDB,
  - no customer above the per-customer limit, no idempotency key with two orders,
  - pool + leases + sold == stock,
  - customers whose last attempt had an unknown outcome resolved by reading the ledger.

Also the two timings of the table (`recovery`, `outage`) read from the history. Liveness (the sale sells
out after healing) is checked before quiescence, while the instances run: see `liveness`."""

import json

from .clients import pairs, redis_call, wait_until


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
    """Waits (bounded) for the outbox and the commit log to drain into MongoDB, then stops the instances
    gracefully so their leases return: the ledger is at rest."""
    primary = topology.primary_port

    def drained():
        for stream in ("fs:{%s}:outbox" % sale, "fs:{%s}:commits" % sale):
            pending = redis_call(primary, "XPENDING", stream, "mongo-sink")
            if redis_call(primary, "XLEN", stream) != 0 or not (pending is None or pending[0] == 0):
                return False
        return True

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
    # A customer's entry: the units they hold, then the ids of the orders holding them, then those orders' key
    # claims ("\n<key>\r<orderId>" each).
    entries, claims = {}, {}
    for customer, text in pairs(redis_call(primary, "HGETALL", keys["users"])).items():
        head, _, rest = text.partition("\n")
        entries[customer] = head.split(" ")
        claims[customer] = dict(line.partition("\r")[::2] for line in rest.split("\n")) if rest else {}
    users = {k: int(v[0]) for k, v in entries.items()}
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
    held = {}
    for order in ledger_confirmed:
        held.setdefault(order["c"], set()).add(order["id"])
    # ... and each claim in an entry names one of the orders it holds, placed under that key
    entries_disagree = sorted(c for c in set(held) | set(entries)
                              if set(entries.get(c, [None])[1:]) != held.get(c, set()) or users.get(c, 0) != per_customer.get(c, 0)
                              or any(order not in held.get(c, set()) or orders[order].get("k") != key
                                     for key, order in claims.get(c, {}).items()))
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
        if field in idem or attempt["key"] in claims.get(attempt["customer"], {}):
            resolved_ordered += 1

    mongo_orders = {d["_id"]: d for d in topology.mongo_op({"op": "documents", "collection": "orders"}).get("documents", [])}
    missing_in_mongo = [o for o in acknowledged if o not in mongo_orders and orders.get(o, {}).get("s") == "confirmed"]

    invariant = pool + leased + sold == stock
    oversold = max(0, confirmed_units - stock, ledger_units - stock, sold - stock)
    statuses = {}
    for attempt in history.attempts:
        statuses[str(attempt["status"])] = statuses.get(str(attempt["status"]), 0) + 1
    passed = (not lost and oversold == 0 and not over_limit and not double_keys and invariant
              and sold == ledger_units and not missing_in_mongo and not entries_disagree)
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
        "customerEntriesDisagree": entries_disagree[:10],
        "invariant": invariant,
        "ledgerUnitsMatchSold": sold == ledger_units,
        "missingInMongo": len(missing_in_mongo),
        "leasesAtRest": len(leases),
        "passed": passed,
    }

