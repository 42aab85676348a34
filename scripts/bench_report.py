"""Writes BENCHMARKS.md from one `make bench` run (scripts/bench.sh): the order paths side by side under wrk
(scripts/throughput.py), the reference crowd and the open-loop bar (scripts/crowd.py), the engine's profile,
the microbenchmarks; then docs/profile-history.md (hand-written: the profile before and after each change).

    python3 scripts/bench_report.py reports/bench > BENCHMARKS.md
"""
import glob
import json
import os
import platform
import subprocess
import sys

OUT = sys.argv[1]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def newest(pattern):
    files = sorted(glob.glob(os.path.join(OUT, pattern)))
    return json.load(open(files[-1])) if files else None


def fmt(value, spec="%.0f"):
    return spec % value if isinstance(value, (int, float)) else "-"


cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
print("# FlashSale benchmarks\n")
print("Written by `make bench` (scripts/bench.sh, then scripts/bench_report.py). Machine: %d cores (%s), %s %s."
      % (os.cpu_count(), cpu, platform.system(), platform.release()))
print("wrk, the server and redis-server (AOF, `appendfsync always`) share these cores, so absolute figures are low and")
print("the machine is noisy: compare the ratios, measured side by side in one run, rows alternated each round.\n")

tp = newest("throughput-*.json")
if tp:
    m, ratios = tp["medians"], tp["ratios"]
    print("## Order paths at wire speed (wrk)\n")
    print("`%s`: `wrk -t2 -c1000`, every request a different customer, a fresh server and redis-server per row, an 8 s" % tp["command"])
    print("window after a warm-up; medians of %d rounds. `us` = CPU microseconds per request (healthz) or per confirmed" % max(r["rounds"] for r in m.values()))
    print("order, from /proc/PID/stat deltas over the window; wrk's own CPU is shown: it is the instrument, and must stay")
    print("below the server's.\n")
    print("| row | rate/s | per round | p50 ms | p99 ms | server us | redis us | wrk us | server cores | wrk cores |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    labels = {"healthz": "GET /healthz (the HTTP ceiling)", "noop": "order, `--order-path noop` (front only)",
              "engine": "order, `--order-path engine`", "direct": "order, `--order-path direct` (one EVALSHA per order)"}
    for row in ("healthz", "noop", "engine", "direct"):
        if row not in m:
            continue
        r = m[row]
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            labels[row], fmt(r["rate"]), "/".join(fmt(x) for x in r["ratePerRound"]), fmt(r["p50Ms"], "%.1f"), fmt(r["p99Ms"], "%.1f"),
            fmt(r["cpuMicrosPer"]["server"], "%.1f"), fmt(r["cpuMicrosPer"]["redis"], "%.1f"), fmt(r["cpuMicrosPer"]["wrk"], "%.1f"),
            fmt(r["cpuCores"]["server"], "%.2f"), fmt(r["cpuCores"]["wrk"], "%.2f")))
    print()
    targets = {"noop/healthz": ">= 0.5", "engine/noop": ">= 0.85", "engine/healthz": ">= 0.4", "engine/direct": ">= 2"}
    print("| ratio | median of rounds | per round | target |")
    print("|---|---|---|---|")
    for name in [n for n in targets if n in ratios]:
        r = ratios[name]
        print("| %s | %s | %s | %s |" % (name, fmt(r["medianOfRounds"], "%.3f"), ", ".join("%.3f" % x for x in r["perRound"]), targets.get(name, "")))
    if "engine" in m and "direct" in m and m["direct"]["cpuMicrosPer"]["redis"]:
        e, d = m["engine"]["cpuMicrosPer"], m["direct"]["cpuMicrosPer"]
        print("\nRedis CPU per confirmed order: engine %.1f us, direct %.1f us: %.2fx (target <= 0.12x). Server CPU per order:"
              " engine %.1f us = %.2fx a bare request (%.1f us; target <= 2.0x)." % (e["redis"], d["redis"], e["redis"] / d["redis"], e["server"],
                                                                       e["server"] / m["healthz"]["cpuMicrosPer"]["server"] if "healthz" in m else float("nan"),
                                                                       m["healthz"]["cpuMicrosPer"]["server"] if "healthz" in m else float("nan")))
    if "engine" in m and "noop" in m:
        e, n = m["engine"]["cpuMicrosPer"], m["noop"]["cpuMicrosPer"]
        engine_total = e["server"] + e["redis"] + e["wrk"]
        noop_total = n["server"] + n["redis"] + n["wrk"]
        print("\nThe CPU of one order on these shared cores (medians, us): noop %.1f (server %.1f, wrk %.1f); engine %.1f (server"
              " %.1f, Redis %.1f, wrk %.1f). The engine row pays for Redis on the same 2 cores, which the noop row does not: by"
              " the three processes' CPU per order, engine/noop is %.2f; by the server's alone (Redis and the load on cores"
              " of their own, as in a deployment), %.2f." % (noop_total, n["server"], n["wrk"], engine_total, e["server"],
                                                            e["redis"], e["wrk"], noop_total / engine_total, n["server"] / e["server"]))
    print("\nWhat Redis ran per confirmed order in the window (`INFO commandstats`, last round; `x` calls, `us` Redis's own")
    print("time; EVALSHA's time includes the commands its script ran, which are also listed by name):\n")
    for row in ("engine", "direct"):
        runs = [r for r in tp["runs"] if r["row"] == row and r.get("redisCommands")]
        if runs:
            top = runs[-1]["redisCommands"][:8]
            print("- %s: %s" % (row, ", ".join("%s %.3gx / %.2f us" % (c["command"], c["callsPer"] or 0, c["usecPer"] or 0) for c in top)))
    print()

crowd = sorted(glob.glob(os.path.join(OUT, "crowd", "crowd-*i-*.json")))
crowd = [f for f in crowd if "-open-" not in f]
if crowd:
    print("## The reference crowd (wrk): 10,000 customers, 1,000 units, limit 2, all at the opening instant\n")
    print("`scripts/crowd.py --instances 1|3 --compare` (3 instances behind haproxy), engine next to direct in one run.")
    print("Latency = from the moment wrk wrote a customer's request to the answer; every customer arrives at the opening")
    print("on 1,000 keep-alive connections, so it includes queueing behind earlier customers on these 2 shared cores.")
    print("With 3 instances, `front ceiling` is the FCFS precision an engine serving exactly in the order haproxy handed")
    print("the customers to the instances would reach, and `FCFS by hand-over` the engine's own precision against that order")
    print("(from haproxy's request log; see `front_order` in scripts/flashsale_crowd/front.py). `warm`: each connection served one")
    print("`GET /healthz` before the opening (`--warm`: the page a customer loaded), so haproxy's connections to the")
    print("instances already existed when the crowd came.\n")
    print("| instances | warm | fleet order delay | path | 201 | 202 | 409 | 503 | p50 ms | p95 ms | p99 ms | sold out after opening | FCFS precision | front ceiling | FCFS by hand-over | ledger |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in crowd:
        for r in json.load(open(path))["runs"]:
            if r.get("mode") == "ceiling":
                continue
            lat = r.get("latencyMs", {})
            p95 = lat.get("p95") or lat.get("p90")
            front = r.get("front") or {}
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s | %s ms | %s | %s | %s | sold %s of %s, %s |" % (
                r["instances"], "yes" if r.get("warm") else "-", "%d ms" % r["fleetOrderDelayMs"] if r.get("fleetOrderDelayMs") and r["path"] == "engine" else "-", r["path"], r["count201"], r["count202"], r["count409"], r["count503"], fmt(lat.get("p50")),
                fmt(p95), "" if lat.get("p95") else " (p90)", fmt(lat.get("p99")), fmt(r.get("sellOutFromStartsAtMs")),
                fmt((r.get("fcfs") or {}).get("precision"), "%.3f"), fmt(front.get("ceiling"), "%.3f"),
                fmt(front.get("precisionByHandOver"), "%.3f"), r["sold"], r["stock"], "OVERSOLD" if r["oversold"] else "no oversell"))
    print()

opens = sorted(glob.glob(os.path.join(OUT, "crowd", "crowd-open-*.json")))
if opens:
    print("## The bar: 10,000 concurrent customers, open loop\n")
    print("`scripts/crowd.py --open-loop`: 10,000 keep-alive connections, each order a new customer, sent on a fixed")
    print("schedule; latency measured from the intended send time (a late send counts its lateness).\n")
    print("`wrk ceiling` = wrk on `GET /healthz` with the same connections right after the run (the instrument's")
    print("own ceiling; `-` when the run was made with `--no-ceiling`).\n")
    print("| instances | connections | target orders/s | sent/s | answered/s | p50 ms | p95 ms | p99 ms | 503 | late sends | CPU s server / redis / wrk | wrk ceiling req/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in opens:
        for r in json.load(open(path))["runs"]:
            lat = r.get("latency201FromDueMs", {})
            cpu_s = r.get("cpuSeconds", {})
            server = sum(v for k, v in cpu_s.items() if k.startswith("instance"))
            print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f / %.1f / %.1f | %s |" % (
                r["instances"], r["connections"], fmt(r["rate"]), fmt(r.get("sentPerSecond")), fmt(r.get("answersPerSecond")), fmt(lat.get("p50")),
                fmt(lat.get("p95")), fmt(lat.get("p99")), r.get("count503"), r.get("late"), server, cpu_s.get("redis", 0), cpu_s.get("wrk", 0),
                fmt((r.get("ceiling") or {}).get("wrkRequestsPerSecond"))))
    print()

scaling = os.path.join(OUT, "cluster-scaling.json")
if os.path.exists(scaling):
    report = json.load(open(scaling))
    table = report.get("table") or []
    print("## The ledger over 1, 2 and 3 Redis Cluster masters\n")
    print("`%s`: one engine instance (one group committer per master), its sales spread over the masters (one sale per"
          % report["command"])
    print("master, customer n on sale n mod N), every Redis with AOF `appendfsync always`, wrk as in the order-path rows;")
    print("`single` is one plain redis-server. Medians over the rounds; per master in port order:\n")
    print("| row | orders/s | per master orders/s | Redis us per order, per master | Redis cores, per master | orders per script call, per master | server us/order | wrk us/order | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in table:
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            t["row"], fmt(t["ordersPerSecond"]), " / ".join(fmt(v) for v in t["perMasterOrdersPerSecond"]),
            " / ".join(fmt(v, "%.1f") for v in t["perMasterRedisMicrosPerOrder"]),
            " / ".join(fmt(v, "%.2f") for v in t["perMasterRedisCores"]),
            " / ".join(fmt(v, "%.1f") for v in t.get("perMasterOrdersPerScriptCall", [])), fmt(t["serverMicrosPerOrder"]),
            fmt(t["wrkMicrosPerOrder"]), fmt(t["p99Ms"], "%.1f")))
    one = next((t for t in table if t["row"] == "masters-1"), None)
    single = next((t for t in table if t["row"] == "single"), None)
    if one and one["perMasterRedisMicrosPerOrder"][0] and one["serverMicrosPerOrder"]:
        per_master = one["perMasterRedisMicrosPerOrder"][0]
        per_server = one["serverMicrosPerOrder"]
        if single and single["ordersPerSecond"]:
            print()
            print("The cluster client against one plain primary (`masters-1` against `single`): %s the orders/s, %s us of"
                  % (fmt(one["ordersPerSecond"] / single["ordersPerSecond"], "%.2fx"), fmt(per_server)))
            print("server CPU per order against %s." % fmt(single["serverMicrosPerOrder"]))
        print()
        print("Spreading the same load over more masters thins each master's commit batches (orders per script call")
        print("above), so each master spends more CPU per order, and one instance's server CPU per order grows with its")
        print("committer threads. A master near saturation gets batches at least as large as in the `masters-1` row (they")
        print("grow with the load), so that row's cost is the one to plan with. On these two shared cores the one server")
        print("instance is the bottleneck and every")
        print("Redis node shares its cores, so orders/s cannot grow with the masters here. On a real cluster, a master on a")
        print("core of its own commits at most 1,000,000 / %.1f = %s orders/s (Redis runs commands on one thread), and N"
              % (per_master, fmt(1e6 / per_master)))
        print("masters N times that, as long as each sale's orders stay within its master's share (a sale never spans")
        print("masters). The API needs %.0f us of CPU per order: %s cores per busy master, about %s instances of 2 cores."
              % (per_server, fmt(per_server / per_master, "%.1f"), fmt(per_server / per_master / 2, "%.1f")))
        print("With 3 masters: about %s orders/s." % fmt(3 * 1e6 / per_master))
    print()

memory = os.path.join(OUT, "conn-memory.json")
if os.path.exists(memory):
    report = json.load(open(memory))
    print("## What a connection costs in memory\n")
    print("`scripts/conn_memory.py --connections %d`: one engine instance and a real redis-server; the server's VmRSS after" % report["connections"])
    print("each step, all connections doing the step together (sizes the connection cap: docs/deploying.md, \"Connections and memory\"):\n")
    print("| step | RSS MiB | growth per connection KiB | answers |")
    print("|---|---|---|---|")
    previous = None
    for step in report["steps"]:
        if step["step"].startswith("a fresh server"):
            previous = None
        answers = ", ".join("%s x%s" % (k, v) for k, v in sorted((step.get("answers") or {}).items()))
        per = "" if previous is None else "%.1f" % ((step["rssKiB"] - previous) / report["connections"])
        print("| %s | %.1f | %s | %s |" % (step["step"], step["rssKiB"] / 1024, per, answers))
        previous = step["rssKiB"]
    print("\nA connection that has placed orders: %.1f KiB; a live socket: %s KiB.\n"
          % (report["perConnectionKiB"], "%.1f" % report["perLiveSocketKiB"] if "perLiveSocketKiB" in report else "-"))

profile = os.path.join(OUT, "profile-engine-groups.txt")
if os.path.exists(profile):
    print("## Where an order's server CPU goes (engine, perf)\n")
    print("`scripts/throughput.py --profile 10`: `perf record -g -p <server>` for 10 s under the engine row's load; each sample")
    print("goes to the nearest frame, leaf to root, that names a component:\n")
    print("```")
    lines = open(profile).read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("WHO")), 0)
    end = next((i for i, l in enumerate(lines) if l.startswith("WHAT")), len(lines))
    for line in lines[start + 2:end]:
        if line.strip() and not line.startswith("         "):
            print(line.rstrip())
    print("```\n")

micro = os.path.join(OUT, "micro.txt")
if os.path.exists(micro):
    print("## Microbenchmarks (package-benchmark)\n")
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
    print("```\n")

history = os.path.join(ROOT, "docs", "profile-history.md")
if os.path.exists(history):
    print(open(history).read().rstrip())
