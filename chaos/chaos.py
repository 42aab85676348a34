#!/usr/bin/env python3
"""FlashSale chaos suite: real processes on loopback, faults on a schedule, a checked history.

Each scenario starts a topology (three `flashsale serve` instances behind haproxy, a Redis primary with
AOF `appendfsync always` behind a TCP proxy the harness controls, the wire-level MongoDB server, and for
the failover scenario two replicas and three Sentinels), runs a sale under a workload of many customers,
injects its fault, heals, sweeps the sale to its end, waits for quiescence and checks the history against the
ledger and MongoDB:

  - confirmed units <= stock (no oversell),
  - every acknowledged order (a 201) is in the ledger after healing, and in MongoDB after draining,
  - no customer above the per-customer limit, no idempotency key with two orders,
  - pool + leases + sold == stock at quiescence,
  - requests whose outcome was unknown (timeout, dropped connection) are resolved by reading the ledger,
  - liveness: after healing, a bounded sweep of fresh customers sells the sale out (closed `sold_out`)
    within 3 lease TTLs + 10 s; units still stranded then (the lease table is printed) fail the scenario.

    chaos.py [--scenarios kill-instance,pause-instance,...] [--bin .build/debug/flashsale] [--quick] [--tls]

With --tls every hop the suite controls is HTTPS (TLS 1.2+): a throwaway CA made once per run signs the
certificate of the instances and of haproxy, which re-encrypts towards the instances (health checks
included); every client of the suite verifies against that CA.

Everything is bounded: each scenario has a hard deadline, every wait has a timeout, every process the
harness starts is stopped at the end (also on errors). Traffic stays on 127.0.0.1.
Exit status: 0 when every scenario passed its checks (the control scenario is expected to lose orders and
is reported, not failed, also on liveness), 1 otherwise. The parts live in the package `flashsale_chaos`
next to this file (clients, processes, topology, workload, faults, scenarios, liveness, checker, runner, report).
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile

from flashsale_chaos import ROOT
from flashsale_chaos.clients import use_tls
from flashsale_chaos.report import keep_files, print_table, write_json
from flashsale_chaos.runner import run_scenario
from flashsale_chaos.scenarios import SCENARIOS
from flashsale_chaos.topology import make_certificates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="all", help="comma-separated names, or all")
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/flashsale"))
    parser.add_argument("--quick", action="store_true", help="smaller sales (the make test subset)")
    parser.add_argument("--report", default=os.path.join(ROOT, "reports/chaos"), help="where the JSON report and logs go")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--tls", action="store_true", help="HTTPS on every hop, verified against a throwaway CA")
    args = parser.parse_args(argv)
    args.bin = os.path.abspath(args.bin)

    names = [s.name for s in SCENARIOS] if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [n for n in names if n not in {s.name for s in SCENARIOS}]
    if unknown:
        parser.error("unknown scenarios: %s (known: %s)" % (", ".join(unknown), ", ".join(s.name for s in SCENARIOS)))
    if not os.access(args.bin, os.X_OK):
        parser.error("%s is not an executable flashsale binary" % args.bin)
    for tool in ("redis-server", "haproxy") + (("openssl",) if args.tls else ()):
        if not shutil.which(tool):
            parser.error("%s is not installed (scripts/bootstrap.sh installs it)" % tool)

    # `timeout` (make chaos) sends SIGTERM: unwind through the finally blocks that stop every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(args.report, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="flashsale-chaos-")
    results = []
    try:
        tls = None
        if args.tls:
            tls = make_certificates(workdir)
            use_tls(tls.ca)
        for scenario in SCENARIOS:
            if scenario.name not in names:
                continue
            print("chaos: %s: %s" % (scenario.name, scenario.description), flush=True)
            result = run_scenario(scenario, args.bin, workdir, args.quick, tls)
            results.append(result)
            print("chaos: %s %s in %ss" % (scenario.name, "passed" if result.get("passed") else
                                           ("reported" if scenario.control else "FAILED"), result["seconds"]), flush=True)
    finally:
        keep_files(results, workdir, args.report, args.keep_logs)
        shutil.rmtree(workdir, ignore_errors=True)
    write_json(results, args.report)
    print()
    print_table(results, args.tls)
    failed = [r for r in results if not r.get("passed") and not r.get("control")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
