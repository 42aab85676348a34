"""Writes BENCHMARKS.md from the side-by-side load reports (medians over rounds, ratios to the textbook path)."""
import json
import os
import platform
import statistics
import subprocess
import sys

out, rounds, seconds, connections = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
paths = ["engine", "direct", "noop"]
runs = {path: [json.load(open(os.path.join(out, f"{path}-{r}.json"))) for r in range(1, rounds + 1)] for path in paths}
median = {path: {
    "orders": statistics.median(run["ordersPerSecond"] for run in runs[path]),
    "requests": statistics.median(run["requestsPerSecond"] for run in runs[path]),
    "p50": statistics.median(run["latency"]["p50Milliseconds"] for run in runs[path]),
    "p99": statistics.median(run["latency"]["p99Milliseconds"] for run in runs[path]),
} for path in paths}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print("# FlashSale benchmarks\n")
print(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}. The load generator, the server and")
print("redis-server (AOF, `appendfsync always`) share these cores, so absolute figures are low; compare the ratios, measured")
print("side by side in one run, alternating the order paths each round.\n")
print("## Order paths under the same closed-loop load\n")
print(f"`make bench` runs `flashsale load --mode closed-loop --connections {connections} --duration-seconds {seconds}` against")
print("`flashsale serve --order-path engine|direct|noop`, " + f"{rounds} rounds; medians:\n")
print("| order path | orders/s | p50 ms | p99 ms | vs direct |")
print("|---|---|---|---|---|")
for path, label in [("engine", "engine (shards + group commit)"), ("direct", "direct (one EVALSHA per order)"), ("noop", "noop (HTTP ceiling, no ledger)")]:
    m = median[path]
    ratio = m["orders"] / median["direct"]["orders"] if median["direct"]["orders"] else float("nan")
    print(f"| {label} | {m['orders']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {ratio:.2f}x |")
print("\nEvery round (orders/s): " + "; ".join(f"{p}: " + ", ".join(f"{r['ordersPerSecond']:.0f}" for r in runs[p]) for p in paths))
crowd = {path: os.path.join(out, f"crowd-{path}.json") for path in ["engine", "direct"]}
if all(os.path.exists(f) for f in crowd.values()):
    print("\n## The reference case: a flash crowd\n")
    print("`flashsale load --mode flash-crowd --customers 10000 --stock 1000 --limit 2 --starts-in-seconds 5` against each real")
    print("order path (one run each; 10,000 connections from the load generator on the same 2 cores):\n")
    print("| order path | requests | p50 ms | p95 ms | p99 ms | sold out after | FCFS precision | oversell check |")
    print("|---|---|---|---|---|---|---|---|")
    for path in ["engine", "direct"]:
        run = json.load(open(crowd[path]))
        lat = run["latency"]
        sell = f"{run['sellOutMilliseconds']:.0f} ms" if run.get("sellOutMilliseconds") is not None else "-"
        fcfs = f"{run['fcfsPrecision']:.3f}" if run.get("fcfsPrecision") is not None else "-"
        o = run.get("oversell") or {}
        check = f"sold {o.get('sold')} of {o.get('stock')}, " + ("OVERSOLD" if o.get("oversold") else "no oversell")
        print(f"| {path} | {run['requests']} | {lat['p50Milliseconds']:.0f} | {lat['p95Milliseconds']:.0f} | {lat['p99Milliseconds']:.0f} | {sell} | {fcfs} | {check} |")
    print("\nRequest results (engine): " + ", ".join(f"{k} {v}" for k, v in sorted(json.load(open(crowd['engine']))["requestResults"].items())))
    print("\nOn this shared 2-core machine the latency of a 10,000-customer crowd is queueing: the load generator,")
    print("the server and Redis take turns on two cores. Spread over more cores, or with the load generator elsewhere,")
    print("the same run is the measurement to repeat.")

micro = os.path.join(out, "micro.txt")
if os.path.exists(micro):
    print("\n## Microbenchmarks (package-benchmark)\n")
    print("`cd Benchmarks && swift package --disable-sandbox benchmark` (wall clock and mallocs; p50 per benchmark):\n")
    print("```")
    name = None
    for line in open(micro, errors="replace"):
        line = line.rstrip()
        if line and not line.startswith(("│", "╒", "╞", "├", "╘", "=", " ")) and "benchmark" not in line.lower()[:9]:
            name = line
        elif name and line.startswith("│") and ("Time" in line or "Malloc" in line):
            cells = [c.strip() for c in line.strip("│").split("│")]
            print(f"{name[:70]:70s} {cells[0]:28s} p50 {cells[3]}")
    print("```")
