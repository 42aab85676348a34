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

Beside safety and liveness each scenario reports its availability while the fault lasted (see
`flashsale_chaos.availability`): the share of first attempts answered 201/202/409, the share of intents so
answered when the customer retries as the sale page does, and the time to recover; scenarios with a target
(rolling-upgrade, planned-failover, slow-redis, slow-mongo) fail below it.

    chaos.py [--scenarios kill-instance,pause-instance,...] [--bin .build/debug/flashsale] [--quick] [--tls]
             [--repeat N]

With --repeat N (make soak) every scenario runs N times, round by round, and a second table gives each
figure's minimum, median and maximum over the rounds (`soak.json` beside `chaos.json`).

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
from flashsale_chaos.report import keep_files, print_soak_table, print_table, write_json
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
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every scenario (the soak), 1 to 50")
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 50:
        parser.error("--repeat must be between 1 and 50")
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
    # Only the first: a second SIGTERM (`timeout` forwarding one a caller also sent) must not cut the unwinding short.
    def stop(*_):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    os.makedirs(args.report, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="flashsale-chaos-")
    results = []
    try:
        tls = None
        if args.tls:
            tls = make_certificates(workdir)
            use_tls(tls.ca)
        for round_number in range(1, args.repeat + 1):
            for scenario in SCENARIOS:
                if scenario.name not in names:
                    continue
                prefix = "chaos: round %d of %d: " % (round_number, args.repeat) if args.repeat > 1 else "chaos: "
                print("%s%s: %s" % (prefix, scenario.name, scenario.description), flush=True)
                result = run_scenario(scenario, args.bin, workdir, args.quick, tls, round_number)
                results.append(result)
                print("%s%s %s in %ss" % (prefix, scenario.name, "passed" if result.get("passed") else
                                          ("reported" if scenario.control else "FAILED"), result["seconds"]), flush=True)
    finally:
        keep_files(results, workdir, args.report, args.keep_logs)
        shutil.rmtree(workdir, ignore_errors=True)
    write_json(results, args.report)
    print()
    print_table(results, args.tls)
    if args.repeat > 1:
        print()
        print_soak_table(results, args.repeat, args.report)
    failed = [r for r in results if not r.get("passed") and not r.get("control")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
