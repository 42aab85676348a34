#!/usr/bin/env python3
"""An outside measurement of the reference flash crowd, with wrk as the load generator.

The reference case: one sale of 1,000 units, at most 2 per customer, and 10,000 distinct customers who each
press "order" (quantity 1) once at the opening instant. Everything runs on 127.0.0.1: this script starts
its own redis-server (AOF, `appendfsync always`, as scripts/lib.sh does) in a temp dir, N `flashsale serve`
instances (`--instances 1` or `3`; with 3, haproxy in front: roundrobin, http mode, keep-alive, no health
checks so that a busy /readyz cannot take an instance out mid-crowd), creates the sale through
`POST /admin/sales` a few seconds in the future, and drives the crowd with wrk. Every process it starts is
stopped at the end (also on an error, Ctrl-C or SIGTERM); every subprocess call has a timeout.

    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --instances 1 --compare
    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --instances 3 --compare --rounds 2
    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --ceiling   # wrk's own ceiling on /healthz
    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --open-loop --instances 1

Results are printed as a table and written as JSON to reports/crowd/ (`--report-dir`). With `--html PATH`
also one self-contained page (inline SVG, no script) with a section per crowd run (`make demo` writes it to
reports/demo-*.html). Exit status: 0 when every run finished without an oversell, an acknowledged order
missing from the ledger or an error; 1 otherwise or when interrupted; 2 for a bad command line.

How the crowd is generated, how arrival order and FCFS precision are measured, and the open-loop row
(`--open-loop`): the docstring of the package `flashsale_crowd` next to this file, which also lists its
parts (clients, tokens, processes, topology, sale, workload, closed_loop, open_loop, figures, measures,
front, open_measures, ceiling, report, charts, page). It shares the chaos suite's clients, Process and
haproxy configuration writer (chaos/flashsale_chaos, put on sys.path here). The other measurements
(throughput, freshness, conn_memory, commit_cost) import their building blocks from this file (`__all__`:
Topology, Processes, token, request, redis_call, ...).
"""

import argparse
import os
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chaos"))  # flashsale_chaos, shared with the chaos suite

from flashsale_chaos.clients import b64url, free_port, pairs, request, wait_until  # noqa: E402
from flashsale_crowd import BODY, JWT_SECRET, ROOT  # noqa: E402
from flashsale_crowd.ceiling import run_ceiling  # noqa: E402
from flashsale_crowd.clients import Redis, redis_call  # noqa: E402
from flashsale_crowd.closed_loop import run_crowd  # noqa: E402
from flashsale_crowd.open_loop import run_open_loop  # noqa: E402
from flashsale_crowd.page import write_html  # noqa: E402
from flashsale_crowd.processes import CLK_TCK, Processes, cpu_seconds, start_piped as procs_start_wrk  # noqa: E402
from flashsale_crowd.report import (log_crowd_result, log_open_result, machine, print_open_table,  # noqa: E402
                                    print_table, write_json)
from flashsale_crowd.sale import rfc3339_ms  # noqa: E402
from flashsale_crowd.tokens import customer_name, token  # noqa: E402
from flashsale_crowd.topology import Topology  # noqa: E402

# The building blocks other scripts import from here (throughput.py, freshness.py, conn_memory.py,
# commit_cost.py): the names and defaults they had when this file held them all.
__all__ = ["BODY", "CLK_TCK", "JWT_SECRET", "ROOT", "Processes", "Redis", "Topology", "b64url", "cpu_seconds",
           "customer_name", "free_port", "main", "pairs", "procs_start_wrk", "redis_call", "request", "rfc3339_ms",
           "token", "wait_until"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/flashsale"))
    parser.add_argument("--instances", type=int, choices=(1, 3), default=1)
    parser.add_argument("--order-path", choices=("engine", "direct"), default="engine")
    parser.add_argument("--compare", action="store_true", help="engine then direct, alternated, --rounds times")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=None, help="1000 (10,000 with --open-loop)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--stock", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--hold-seconds", type=float, default=None,
                        help="wrk starts this long before startsAt (3; with --open-loop before the schedule, 5)")
    parser.add_argument("--lead-seconds", type=float, default=3.0, help="extra time between creating the sale and starting wrk")
    parser.add_argument("--crowd-seconds", type=float, default=8.0, help="wrk -d = hold + this")
    parser.add_argument("--open-margin-ms", type=int, default=1, help="first requests leave at startsAt + this")
    parser.add_argument("--sale-seconds", type=int, default=120, help="the sale's durationSeconds")
    parser.add_argument("--settle-seconds", type=int, default=20, help="how long to wait for the sale to close after wrk")
    parser.add_argument("--fleet-order-delay-ms", type=int, default=0,
                        help="with --instances 3: the instances' FLASHSALE_FLEET_ORDER_DELAY_MS (exact arrival order across them)")
    parser.add_argument("--ceiling", action="store_true", help="only wrk on GET /healthz of one instance, 5 s")
    parser.add_argument("--open-loop", action="store_true",
                        help="--connections each sending one order every connections/rate seconds (see the docstring)")
    parser.add_argument("--rate", type=float, default=5000, help="--open-loop: orders/s, all connections together")
    parser.add_argument("--duration", type=float, default=10, help="--open-loop: seconds of the schedule")
    parser.add_argument("--drain-seconds", type=float, default=3, help="--open-loop: wrk -d = hold + duration + this")
    parser.add_argument("--seed", type=int, default=None, help="--open-loop: seed of the connections' phases")
    parser.add_argument("--warm", action="store_true",
                        help="each connection first serves one GET /healthz during the hold (ends 1.5 s before the "
                             "opening or the schedule), so the orders meet connections (and, behind haproxy, the "
                             "front's connections to the instances) that have already served a request")
    parser.add_argument("--no-ceiling", dest="with_ceiling", action="store_false",
                        help="--open-loop: skip wrk's ceiling on /healthz in the same topology afterwards")
    parser.add_argument("--report-dir", default=os.path.join(ROOT, "reports/crowd"))
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--html", metavar="PATH", help="also write one self-contained HTML page of the crowd run(s)")
    args = parser.parse_args()
    if args.connections is None:
        args.connections = 10000 if args.open_loop else 1000
    if args.hold_seconds is None:
        # 10,000 connects overflow the server's accept backlog (256); a dropped SYN is retried after 1 s, then 3 s
        args.hold_seconds = 5.0 if args.open_loop else 3.0
    if args.open_loop and (args.ceiling or args.compare):
        parser.error("--open-loop runs its own ceiling afterwards; it does not combine with --ceiling or --compare")
    if args.html and (args.open_loop or args.ceiling):
        parser.error("--html is for the crowd runs, not --open-loop or --ceiling")
    if args.open_loop and (args.rate <= 0 or args.duration <= 0):
        parser.error("--rate and --duration must be positive")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    if args.connections % args.threads:
        parser.error("--connections must be a multiple of --threads")
    args.bin = os.path.abspath(args.bin)  # the children run in their temp dirs
    if not os.access(args.bin, os.X_OK):
        parser.error("no executable at --bin %s" % args.bin)
    for tool in ("wrk", "redis-server") + (("haproxy",) if args.instances > 1 else ()):
        if not shutil.which(tool):
            parser.error("%s is not installed (apt-get install -y %s)" % (tool, "redis-server" if tool == "redis-server" else tool))
    return args


def main():
    args = parse_args()

    def log(message):
        print(message, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    procs = Processes()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {"startedAt": started, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": machine(), "bin": args.bin, "runs": []}
    try:
        if args.open_loop:
            try:
                result = run_open_loop(args, procs, log)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - reported like a failed crowd run
                result = {"mode": "open-loop", "instances": args.instances, "connections": args.connections,
                          "error": str(error)}
            report["runs"].append(result)
            log_open_result(result, log)
            print()
            print_open_table(report["runs"])
            print()
            print("command: " + report["command"])
        elif args.ceiling:
            result = run_ceiling(args, procs, log)
            report["runs"].append(result)
            print("\n".join(result["wrkText"]))
        else:
            paths = ["engine", "direct"] if args.compare else [args.order_path]
            for round_no in range(1, args.rounds + 1):
                for path in paths:
                    try:
                        result = run_crowd(args, path, round_no, procs, log)
                    except KeyboardInterrupt:
                        raise
                    except Exception as error:  # noqa: BLE001 - one failed run is reported, the others go on
                        result = {"path": path, "instances": args.instances, "round": round_no, "error": str(error)}
                    report["runs"].append(result)
                    log_crowd_result(result, log)
            print()
            print_table(report["runs"])
    except KeyboardInterrupt:
        log("crowd: interrupted; stopping everything it started")
        report["interrupted"] = True
    finally:
        procs.stop_all()
        name = "crowd-%s-%s.json" % ("ceiling" if args.ceiling else ("open-" if args.open_loop else "") + "%di" % args.instances,
                                      started)
        path = write_json(args.report_dir, name, report)
        print("crowd: report %s" % os.path.relpath(path, os.getcwd()))
        if args.html:
            write_html(args.html, report)
            print("crowd: html report %s" % os.path.relpath(args.html, os.getcwd()))
    return 1 if report.get("interrupted") or any("error" in r or r.get("oversold") or r.get("ackedButMissing")
                                                  for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
