"""One scenario from start to verdict: start its topology, open a sale, run the workload while the fault is
injected and healed, sweep the sale to its end (liveness), write the history, quiesce, check, and stop
every process (also on errors)."""

import datetime
import json
import os
import random
import threading
import time

from .availability import availability
from .checker import check, outage, quiesce, recovery
from .clients import pairs, redis_call, request, wait_until
from .liveness import liveness
from .topology import Topology
from .workload import History, open_sale, run_workload


def stock_events(topology, sale):
    """The sale's whole stock log: the drainer trims the Redis stream below what MongoDB acknowledged,
    so the drained part is read back from MongoDB's `stock_events` and the rest from the stream."""
    events = {}
    for document in topology.mongo_op({"op": "documents", "collection": "stock_events"}).get("documents", []):
        if document.get("saleId") == sale:
            events[document["_id"]] = {"reason": document.get("reason"), "instance": document.get("instance"),
                                       "at": _milliseconds(document.get("at"))}
    for entry in redis_call(topology.primary_port, "XRANGE", "fs:{%s}:stocklog" % sale, "-", "+") or []:
        events["%s:%s" % (sale, entry[0].decode() if isinstance(entry[0], bytes) else entry[0])] = pairs(entry[1])
    return list(events.values())


def _milliseconds(value):
    """A BSON date as the control port writes it (relaxed extended JSON: `{"$date": ISO-8601}`, or
    `{"$date": {"$numberLong": ms}}` outside 1970-9999), as milliseconds since 1970; None if absent."""
    date = value.get("$date") if isinstance(value, dict) else None
    if isinstance(date, dict):
        return int(date.get("$numberLong", 0))
    if isinstance(date, str):
        parsed = datetime.datetime.fromisoformat(date.replace("Z", "+00:00"))
        return int(parsed.timestamp() * 1000)
    return None


def run_scenario(scenario, binary, root_workdir, quick, tls=None, round_number=1):
    """One run of `scenario` (round `round_number` of a soak: its files go to their own directory)."""
    workdir = os.path.join(root_workdir, scenario.name if round_number == 1 else "%s.%d" % (scenario.name, round_number))
    os.makedirs(workdir, exist_ok=True)
    result = {"scenario": scenario.name, "description": scenario.description, "control": scenario.control,
              "round": round_number}
    topology = None
    started = time.monotonic()
    try:
        topology = Topology(scenario.name, binary, workdir, tls=tls, **scenario.topology)
        stock = scenario.workload.get("stock", 300 if quick else 600)
        customers = scenario.workload.get("customers", 900 if quick else 1800)
        workers = scenario.workload.get("workers", 48)
        sale = "chaos-%s-%d" % (scenario.name, int(time.time()))
        topology.sale = sale
        open_sale(topology, sale, stock)

        history = History()
        rng = random.Random(scenario.name)
        intents = [("c%05d" % i, rng.choice([1, 1, 2])) for i in range(customers)]
        deadline = time.monotonic() + scenario.workload.get("seconds", 25 if quick else 40)
        fault = {}

        def faults():
            time.sleep(1.0)
            fault["injected"], fault["injectedWall"] = time.monotonic(), time.time()
            scenario.inject(topology)
            fault["healStartedWall"], heal_started = time.time(), time.monotonic()
            if scenario.heal:
                scenario.heal(topology)
            # Measured while the workload still runs: from the start of healing until every instance is ready.
            fault["readySeconds"] = measure_recovery(topology, heal_started)
            fault["overWall"] = time.time()

        injector = threading.Thread(target=faults, daemon=True)
        run_workload(topology, sale, intents, workers, deadline, history, injector.start,
                     scenario.workload.get("arrivalSeconds", 6.0))
        injector.join(60)
        # The timings and the fault's evidence come from the workload; the sweep after healing proves neither.
        workload = history.copy()
        result["recoverySeconds"] = recovery(workload, fault)
        result["outageSeconds"] = outage(workload, fault)
        result["availability"] = availability(workload, fault)
        result["availabilityTargets"] = scenario.targets
        result["availabilityMet"] = all((result["availability"].get(name) or 0) >= target
                                        for name, target in scenario.targets.items())
        result["alive"] = all(p.alive for p in topology.instances)
        result["maxRSSMiB"] = round(max(p.rss_bytes() for p in topology.instances) / 2**20)
        sweep = liveness(topology, sale, stock, history)
        result["live"], result["liveness"] = sweep["live"], sweep
        with open(os.path.join(workdir, "history.jsonl"), "w") as handle:
            for attempt in sorted(history.attempts, key=lambda a: a["sent"]):
                handle.write(json.dumps(attempt) + "\n")
        quiesce(topology, sale)
        result.update(check(topology, sale, stock, history))
        result["sweepRequests"] = sweep["requests"]
        stocklog = stock_events(topology, sale)
        took_effect, evidence = scenario.effect(topology, workload, stocklog) if scenario.effect else (True, "-")
        result["effect"], result["evidence"] = took_effect, evidence
        if tls:
            result["tls"] = topology.tls_evidence()
        # Memory stays bounded (overload especially): an instance above 2 GiB fails the scenario.
        result["passed"] = (result["passed"] and result["alive"] and took_effect and result["maxRSSMiB"] < 2048
                            and result["live"] and result["availabilityMet"]
                            and (not tls or result["tls"]["serversUseTLS"]))
    except Exception as error:  # noqa: BLE001 - a broken scenario is reported, never hidden
        result.update({"passed": False, "error": "%s: %s" % (type(error).__name__, error)})
    finally:
        if topology:
            topology.shutdown()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def measure_recovery(topology, since):
    """Seconds from `since` (monotonic) until every instance answers /readyz 200 (None after 30 s)."""
    ready = wait_until(lambda: all(request(p, "GET", "/readyz", timeout=2)[0] == 200 for p in topology.instance_ports), 30, 0.05)
    return round(max(0.0, time.monotonic() - since), 2) if ready else None
