#!/usr/bin/env python3
"""The engine with its sales spread over 1, 2 and 3 Redis Cluster masters, side by side in one run, with wrk.

Rows, alternated for --rounds rounds, each on fresh processes:

    single     one redis-server (no cluster), one sale            (the reference: today's deployment)
    masters-N  a Redis Cluster of N masters (no replicas), N sales, one on each master

Every row: one `flashsale serve --order-path engine` (FLASHSALE_REDIS_CLUSTER_NODES = the masters: one group
committer per master), every Redis with AOF `appendfsync always`, and wrk exactly as scripts/throughput.py
runs it (`-t2 -c1000`, every request a different customer, the connections held until all are accepted);
customer n orders on sale n mod N, so every master gets the same share. In the window: orders/s from wrk's
own 201 count, the CPU (utime+stime) of the server, of every redis-server and of wrk (the instrument's cost,
next to the figure), and each master's orders from its sale's `sold`.

Per row: orders/s; per master its orders/s and Redis CPU per order; the server's CPU per order. On these 2
shared cores the server is the bottleneck and all Redis nodes share the cores with it, so orders/s does not
scale here; Redis CPU per order per node is what carries over to a real cluster (BENCHMARKS.md does the
arithmetic for N masters there).

    .venv/bin/python scripts/cluster_scaling.py --bin .build/release/flashsale --rounds 2

Everything is on 127.0.0.1; every process is stopped at the end; every wait is bounded. JSON goes to
--report-dir (reports/bench/cluster-scaling.json).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
sys.path.insert(0, os.path.join(SCRIPTS, "..", "chaos"))
import crowd  # noqa: E402
import throughput as tp  # noqa: E402
from flashsale_chaos.cluster import Cluster, sale_slot  # noqa: E402
from flashsale_chaos.processes import Process  # noqa: E402
from flashsale_chaos.topology import Topology as ChaosTopology  # noqa: E402


class Nodes:
    """What chaos's Cluster needs of a topology: a work directory and durable redis-servers it can start."""
    _spawn = ChaosTopology._spawn
    _start_redis = ChaosTopology._start_redis

    def __init__(self, workdir):
        self.workdir, self.processes, self.durable = workdir, [], True

    def stop(self):
        for process in reversed(self.processes):
            process.stop(grace=5)


def start_ledger(workdir, masters):
    """(nodes, seeds, {port: pid} of every redis-server): one plain redis-server, or a cluster of `masters`."""
    nodes = Nodes(workdir)
    if masters == 0:
        port = crowd.free_port()
        os.makedirs(os.path.join(workdir, "redis"))
        process = nodes._start_redis("redis", port, os.path.join(workdir, "redis"))
        return nodes, None, {port: process.popen.pid}
    cluster = Cluster(nodes, masters=masters, replicas_per_master=0)
    nodes.cluster = cluster
    return nodes, cluster.seeds, {port: cluster.processes[port].popen.pid for port in cluster.master_ports}


def start_server(binary, workdir, seeds, redis_port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_") and k != "MONGO_URI"}
    env.update({"FLASHSALE_JWT_SECRET": crowd.JWT_SECRET, "FLASHSALE_SHUTDOWN_DELAY_SECONDS": "0",
                "FLASHSALE_DATA_KEY": tp.base64.b64encode(os.urandom(32)).decode(), "FLASHSALE_RATE_LIMIT_CUSTOMER": "0",
                "FLASHSALE_RATE_LIMIT_ADDRESS": "0", "FLASHSALE_LOG_LEVEL": "error"})
    if seeds:
        env["FLASHSALE_REDIS_CLUSTER_NODES"] = seeds
    port = crowd.free_port()
    server = Process("server", [binary, "serve", "--port", str(port), "--redis-url", "redis://127.0.0.1:%d" % redis_port,
                                "--order-path", "engine", "--instance-id", "scale"], workdir, env)
    if not crowd.wait_until(lambda: crowd.request(port, "GET", "/readyz", timeout=2)[0] == 200, 60, 0.2):
        raise RuntimeError("the server did not become ready (see %s/server.log)" % workdir)
    return server, port


def sales_on_every_master(nodes, masters, row, round_no):
    """One sale id per master (by its slot's owner), or one sale without a cluster."""
    base = "scale-%s-%d-%s" % (row, round_no, tp.base64.b16encode(os.urandom(2)).decode().lower())
    if masters == 0:
        return {None: base}
    chosen = {}
    for index in range(10000):
        candidate = "%s-%d" % (base, index)
        owner = nodes.cluster.owner(sale_slot(candidate))
        chosen.setdefault(owner, candidate)
        if len(chosen) == masters:
            return chosen
    raise RuntimeError("no sale ids found for every master")


def run_row(args, row, masters, round_no, procs, tokens_file, log):
    workdir = tempfile.mkdtemp(prefix="scale-%s-" % row)
    result = {"row": row, "masters": masters, "round": round_no}
    nodes = server = load = None
    ok = False
    try:
        result["busyBeforeCores"] = tp.wait_quiet(args.quiet_cores, args.quiet_timeout, log)
        nodes, seeds, redis_pids = start_ledger(workdir, masters)
        server, port = start_server(args.bin, workdir, seeds, next(iter(redis_pids)))
        sales = sales_on_every_master(nodes, masters, row, round_no)
        for sale in sales.values():
            tp.create_sale(port, sale, args.stock, args.limit)
        result["sales"] = {str(k): v for k, v in sales.items()}
        load = tp.Load(args, procs, workdir, port, "order", tokens_file, list(sales.values()),
                       int(args.warmup + args.seconds + 120))
        result["wrkCommand"] = " ".join(load.argv)
        accepted = tp.wait_accepted(server.popen.pid, port, args.connections, max(0.0, load.open_at - 0.05 - time.time()) + args.accept_timeout)
        if accepted < args.connections:
            raise RuntimeError("the server accepted only %d of %d connections" % (accepted, args.connections))
        load.wait_started(30)
        time.sleep(args.warmup)
        pids = {"server": server.popen.pid, "wrk": load.child.pid}
        pids.update({"redis-%d" % port: pid for port, pid in redis_pids.items()})

        def sold():
            out = {}
            for owner, sale in sales.items():
                node = owner if owner is not None else next(iter(redis_pids))
                out[sale] = int(crowd.redis_call(node, "GET", "fs:{%s}:sold" % sale) or 0)
            return out
        stats_before = {port: tp.command_stats(port) for port in redis_pids}
        sold_before, before, ticks_before, t1 = sold(), tp.cpu_of(pids), tp.machine_ticks(), time.time()
        time.sleep(args.seconds)
        sold_after, after, ticks_after, t2 = sold(), tp.cpu_of(pids), tp.machine_ticks(), time.time()
        stats_after = {port: tp.command_stats(port) for port in redis_pids}
        if load.child.poll() is not None:
            raise RuntimeError("wrk ended before the measured window did (exit %s)" % load.child.returncode)
        stdout, summary = load.stop()
        load = None
        result["windowSeconds"] = round(t2 - t1, 3)
        result["cpuSeconds"] = {name: round(after[name] - before[name], 3) for name in pids}
        machine = tp.machine_cores(ticks_before, ticks_after, t2 - t1)
        machine["others"] = round(machine["busy"] + machine["irq"] - sum(result["cpuSeconds"].values()) / (t2 - t1), 3)
        result["machineCores"] = machine
        tp.analyse(result, summary, t1, t2)
        per_master = []
        for owner, sale in sales.items():
            orders = sold_after[sale] - sold_before[sale]
            node = owner if owner is not None else next(iter(redis_pids))
            cpu = result["cpuSeconds"]["redis-%d" % node]
            batches = stats_after[node].get("evalsha", (0, 0))[0] - stats_before[node].get("evalsha", (0, 0))[0]
            per_master.append({"port": node, "sale": sale, "ordersPerSecond": round(orders / (t2 - t1), 1),
                               "redisMicrosPerOrder": round(cpu * 1e6 / orders, 1) if orders else None,
                               "redisCores": round(cpu / (t2 - t1), 3),
                               # EVALSHA calls: the commit batches, plus the lease and renewal scripts (a few a second)
                               "ordersPerScriptCall": round(orders / batches, 1) if batches else None})
        result["perMaster"] = per_master
        ok = True
        return result
    except Exception as error:  # noqa: BLE001 - the logs stay for a look
        raise RuntimeError("%s (logs kept in %s)" % (error, workdir)) from error
    finally:
        if load is not None:
            try:
                load.stop()
            except Exception:  # noqa: BLE001
                pass
        if server:
            server.stop(grace=10)
        if nodes:
            nodes.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            result["workdir"] = workdir


def summarise(runs, rows):
    """Per row, the medians across rounds."""
    table = []
    for row in rows:
        done = [r for r in runs if r["row"] == row and "error" not in r]
        if not done:
            continue
        masters = done[0]["perMaster"]

        def med(values):
            values = [v for v in values if v is not None]
            return round(statistics.median(values), 1) if values else None
        table.append({
            "row": row, "rounds": len(done),
            "ordersPerSecond": med([r["rate"] for r in done]),
            "serverMicrosPerOrder": med([r["cpuMicrosPer"]["server"] for r in done]),
            "wrkMicrosPerOrder": med([r["cpuMicrosPer"]["wrk"] for r in done]),
            "p99Ms": med([r["latencyMs"]["p99"] for r in done]),
            "perMasterOrdersPerSecond": [med([r["perMaster"][i]["ordersPerSecond"] for r in done]) for i in range(len(masters))],
            "perMasterRedisMicrosPerOrder": [med([r["perMaster"][i]["redisMicrosPerOrder"] for r in done]) for i in range(len(masters))],
            "perMasterRedisCores": [med([r["perMaster"][i]["redisCores"] for r in done]) for i in range(len(masters))],
            "perMasterOrdersPerScriptCall": [med([r["perMaster"][i]["ordersPerScriptCall"] for r in done]) for i in range(len(masters))],
        })
    return table


def print_table(table, out=sys.stdout):
    header = ("row", "orders/s", "per master orders/s", "Redis us/order per master", "Redis cores per master",
              "orders per script call", "server us/order", "wrk us/order", "p99 ms")
    lines = [header] + [(t["row"], t["ordersPerSecond"], " / ".join(str(v) for v in t["perMasterOrdersPerSecond"]),
                         " / ".join(str(v) for v in t["perMasterRedisMicrosPerOrder"]),
                         " / ".join(str(v) for v in t["perMasterRedisCores"]),
                         " / ".join(str(v) for v in t["perMasterOrdersPerScriptCall"]), t["serverMicrosPerOrder"],
                         t["wrkMicrosPerOrder"], t["p99Ms"]) for t in table]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)), file=out)
        if number == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)), file=out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.path.join(tp.ROOT, ".build/release/flashsale"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--masters", default="0,1,2,3", help="rows: 0 = one plain redis-server, N = a cluster of N")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hold", type=float, default=8.0)
    parser.add_argument("--accept-timeout", type=int, default=60)
    parser.add_argument("--quiet-cores", type=float, default=0.25)
    parser.add_argument("--quiet-timeout", type=int, default=600)
    parser.add_argument("--wrk-timeout", type=int, default=10)
    parser.add_argument("--customers", type=int, default=400000)
    parser.add_argument("--stock", type=int, default=10000000)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--report-dir", default=os.path.join(tp.ROOT, "reports/bench"))
    args = parser.parse_args()
    masters = [int(m) for m in args.masters.split(",")]
    if any(m < 0 or m > 8 for m in masters) or not 1 <= args.rounds <= 10:
        parser.error("--masters 0..8 each, --rounds 1..10")
    args.bin = os.path.abspath(args.bin)
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            parser.error("%s is not installed" % tool)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    def log(message):
        print(message, flush=True)
    rows = [("single" if m == 0 else "masters-%d" % m, m) for m in masters]
    procs = crowd.Processes()
    report = {"startedAt": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "runs": []}
    tokdir = tempfile.mkdtemp(prefix="scale-tokens-")
    try:
        tokens_file = os.path.join(tokdir, "tokens")
        tp.sign_tokens(tokens_file, args.customers, args.threads)
        for round_no in range(1, args.rounds + 1):
            for row, count in rows:
                log("cluster-scaling: round %d, %s" % (round_no, row))
                try:
                    report["runs"].append(run_row(args, row, count, round_no, procs, tokens_file, log))
                except KeyboardInterrupt:
                    raise
                except Exception as error:  # noqa: BLE001 - one failed row is reported, the others go on
                    log("cluster-scaling: %s failed: %s" % (row, error))
                    report["runs"].append({"row": row, "round": round_no, "error": str(error)})
    finally:
        procs.stop_all()
        shutil.rmtree(tokdir, ignore_errors=True)
    report["table"] = summarise(report["runs"], [row for row, _ in rows])
    os.makedirs(args.report_dir, exist_ok=True)
    with open(os.path.join(args.report_dir, "cluster-scaling.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    print()
    print_table(report["table"])
    return 1 if any("error" in r for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
