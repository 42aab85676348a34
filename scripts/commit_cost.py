#!/usr/bin/env python3
"""Redis's own cost of the batch commit script per order, in isolation (no server, no HTTP, no wrk).

One redis-server on a free loopback port (no persistence unless `--aof`: the script's CPU, not the disk's), one sale with
stock for every order, one lease holding all of it, then `--batches` batches of `--batch` orders committed
through `commit_batch.lua` exactly as the group committer sends them (the prelude prepended, EVALSHA, every
order a new customer with an Idempotency-Key and a sealed-looking delivery). Variants, alternated each round
on a fresh sale:

- `plain`: the batch's strings vouched plain (ARGV plain = "1": records written without cjson's escaper);
- `escaped`: the same batch with plain = "0" (every string through cjson.encode, as a batch holding one
  customer id that needs escaping is written);
- `replayed`: the same batch marked as a replay (ARGV replay = "1", as the group committer resends a batch after
  an unknown outcome: the script then looks every order id up first).

Batches are first attempts (replay = "0"), as the committer sends them, unless said otherwise. With
`--against REV`, the script as of that git revision (prelude included) runs as one more variant, `at-REV`, with
the arguments that revision takes: the change since then, measured side by side.

With `--ablation`, measurement-only copies of the script (never used by the service) are timed next to it,
each without one part, to show what each part costs: `no-held-ids` (customers' `users` entries without the
ids of the orders holding their units), `no-reads` (no HMGET of customers, nor of orders or `idem`),
`no-record` (the order id stored instead of its record JSON), `no-order-writes` (no HSET of the records),
`no-entry-writes` (no HSET of the customers' entries), `no-writes` (no HSET of orders, claims and customers'
entries); and, to show what a change saved, copies of the script as it was before it:
`claims-in-idem` (every key claimed in `idem`, read and written per batch, as before the claims moved into
the customers' entries) and `records-in-outbox` (the batch's entry as before the commit log: its records in
full, in the outbox stream).

Per variant: EVALSHA microseconds per order from `INFO commandstats` (Redis's own time, including the commands
the script ran, which are listed too), median over --rounds. Bounded: --rounds x --batches calls, 60 s socket
timeout, redis-server stopped at the end.

With `--aof` the server appends every write to its AOF and fsyncs it before answering (`appendonly yes`,
`appendfsync always`), as the service's Redis runs: a script's writes are then also written to the AOF
buffer inside the call, which `INFO commandstats` counts in EVALSHA's time.

    .venv/bin/python scripts/commit_cost.py --rounds 5
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crowd import Redis, free_port, wait_until  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "Sources", "Replication", "Ledger", "Scripts")
KEYS = "meta pool sold fence leases users idem orders outbox stocklog waitlist waiters stats customer-orders served commits".split()
DELIVERY = "fs1.k1." + "emHtld6PBTTi5fd_Px1as8hlpjgskyW-Z0gE9VqL2ocPSk_Hkv28QPjlxKXlHsuiOTzfvU-dnn1uVkQCC097YB4bWvmDI"


ABLATIONS = {
    "no-held-ids": [("      held[customer] = held[customer] .. ' ' .. id\n", "")],
    "no-reads": [("local existing = replay and read_in_chunks(K.orders, ids) or {}\nlocal idemClaims = claimsInIdem and read_in_chunks(K.idem, keyed) or {}\n"
                  "local purchased = read_in_chunks(K.users, customers)", "local existing, idemClaims, purchased = {}, {}, {}")],
    "no-record": [("      created[id] = encoded\n", "      encoded = id\n      created[id] = encoded\n")],
    "no-order-writes": [("  local added = call_in_chunks('HSET', K.orders, orderWrites)\n", "  local added = committed\n")],
    "no-entry-writes": [("  call_in_chunks('HSET', K.users, userWrites)\n", "")],
    "no-writes": [("  local added = call_in_chunks('HSET', K.orders, orderWrites)\n", "  local added = committed\n"),
                  ("  call_in_chunks('HSET', K.idem, idemWrites)\n  call_in_chunks('HSET', K.users, userWrites)\n", "")],
    # key claims as before they moved into the customers' entries: each in `idem`, read and written per batch
    "claims-in-idem": [("local claimsInIdem = redis.call('HLEN', K.idem) > 0", "local claimsInIdem = true"),
                       ("      local inEntry = key ~= '' and (plain or entry_key(key))\n", "      local inEntry = false\n"),
                       ("      if already == 0 and held[customer] == '' and claimsOf[customer] == '' then\n",
                        "      if key == '' and already == 0 and held[customer] == '' and claimsOf[customer] == '' then\n")],
    # the batch's entry as it was before the commit log: its records in full, in the outbox
    "records-in-outbox": [("      committedIds[committed] = id\n", "      committedIds[committed] = encoded\n"),
                          ("redis.call('XADD', K.commits, '*', 'at', now, 'instance', owner, 'ids', table.concat(committedIds, ' '))",
                           "redis.call('XADD', K.outbox, '*', 'type', 'orders', 'at', now, 'instance', owner, "
                           "'records', '[' .. table.concat(committedIds, ',') .. ']')")],
}


def ablated(body, name):
    for old, new in ABLATIONS[name]:
        if old not in body:
            raise RuntimeError("--ablation %s: commit_batch.lua no longer has %r" % (name, old[:60]))
        body = body.replace(old, new)
    return body


def read(name):
    with open(os.path.join(SCRIPTS, name + ".lua")) as handle:
        return handle.read()


def cpu_seconds(pid):
    """The process's user + system CPU so far (/proc/PID/stat), in seconds."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def layout_of(body):
    """The arguments a revision's commit_batch.lua takes: "leases" (the batch's leases once, then 6 per order),
    "replay" (4 + 7 per order) or "first" (3 + 7 per order, before the replay argument)."""
    if "5 + 2 * leaseCount + 6 * count" in body:
        return "leases"
    return "replay" if "4 + 7 * count" in body else "first"


def run_variant(redis, pid, prelude, sha, sale, plain, batches, batch, replay=False, layout="leases"):
    keys = ["fs:{%s}:%s" % (sale, suffix) for suffix in KEYS]
    now = int(time.time() * 1000)
    stock = batches * batch

    def script(name, *argv):
        return redis("EVAL", prelude + read(name), len(keys), *keys, *argv)
    if script("create_sale", sale, "cost", stock, now - 1000, now + 3_600_000, 2)[0] != "OK":
        raise RuntimeError("create_sale refused")
    # toleranceUs, delayUs, then no arrival pairs (one instance: nobody else waits)
    lease = script("acquire_lease", "inst-1", "inst-1#1", stock, 1, 3_600_000, 1, stock, 3000, 0, 0)
    if lease[0] != "OK" or lease[2] != stock:
        raise RuntimeError("acquire_lease answered %r" % (lease,))
    fence = lease[1]
    redis("CONFIG", "RESETSTAT")
    started = cpu_seconds(pid)
    n = 0
    for _ in range(batches):
        argv = ["inst-1", batch, "1" if plain else "0"] + (["1" if replay else "0"] if layout != "first" else [])
        if layout == "leases":
            argv += [1, "inst-1#1", fence]  # one lease: its shard and fence, then each order names it as "1"
        for _ in range(batch):
            n += 1
            # every sealed delivery differs (its nonce), as the service's do
            order, customer, key, delivery = "%s.o%024x" % (sale, n), "cust-%d" % n, "key-%d" % n, DELIVERY[:-12] + "%012x" % n
            if layout == "leases":
                argv += [order, 1, customer, 1, key, delivery]
            else:
                argv += [order, "inst-1#1", fence, customer, 1, key, delivery]
        out = redis("EVALSHA", sha, len(keys), *keys, *argv)
        if len(out) != batch or not all(isinstance(o, int) for o in out):
            raise RuntimeError("a commit was refused: %r" % (out[:3],))
    stats = {"cpu": (0, (cpu_seconds(pid) - started) * 1e6 / n)}
    for line in redis("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            stats[name] = (int(fields["calls"]) / n, float(fields["usec"]) / n)
    return stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=50, help="orders per batch (the committer's typical size here)")
    parser.add_argument("--ablation", action="store_true", help="also time copies of the script without one part each")
    parser.add_argument("--aof", action="store_true", help="appendonly yes, appendfsync always (as the service's Redis)")
    parser.add_argument("--against", metavar="REV", help="also time the script (and its prelude) as of this git revision: variant at-REV")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 50 and 1 <= args.batches <= 10_000 and 1 <= args.batch <= 512):
        parser.error("--rounds 1..50, --batches 1..10000, --batch 1..512")

    workdir = tempfile.mkdtemp(prefix="commit-cost-")
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if args.aof else ["--appendonly", "no"]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""] + persistence + [
                               "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_until(lambda: _pings(port), 10, 0.05):
            raise RuntimeError("redis-server did not answer on port %d" % port)
        redis = Redis(port, timeout=60)
        prelude = read("prelude")
        body = read("commit_batch")
        shas = {"plain": redis("SCRIPT", "LOAD", prelude + body)}
        shas["escaped"] = shas["plain"]
        shas["replayed"] = shas["plain"]
        if args.ablation:
            for name in ABLATIONS:
                shas[name] = redis("SCRIPT", "LOAD", prelude + ablated(body, name))
        older = {}  # variant -> the arguments that revision's script takes (layout_of)
        if args.against:
            def at(name):
                path = "Sources/Replication/Ledger/Scripts/%s.lua" % name
                return subprocess.run(["git", "-C", ROOT, "show", "%s:%s" % (args.against, path)], check=True,
                                      capture_output=True, text=True).stdout
            old_body = at("commit_batch")
            shas["at-" + args.against] = redis("SCRIPT", "LOAD", at("prelude") + old_body)
            older["at-" + args.against] = layout_of(old_body)
        variants = list(shas)
        results = {variant: [] for variant in variants}
        nested = {variant: {} for variant in variants}
        cpu = {variant: [] for variant in variants}
        for round_no in range(args.rounds):
            for index, variant in enumerate(variants if round_no % 2 == 0 else reversed(variants)):
                stats = run_variant(redis, server.pid, prelude, shas[variant], "cost%d-%d" % (round_no, index), variant != "escaped",
                                    args.batches, args.batch, replay=variant == "replayed", layout=older.get(variant, layout_of(body)))
                results[variant].append(stats["evalsha"][1])
                cpu[variant].append(stats.pop("cpu")[1])
                nested[variant] = stats
                redis("FLUSHALL")
        print("commit_batch.lua, %d batches of %d orders per round, %d rounds (alternated), redis-server %s"
              % (args.batches, args.batch, args.rounds, "with AOF, fsync always" if args.aof else "without persistence"))
        for variant in variants:
            values = results[variant]
            inner = ", ".join("%s %.2f" % (name, usec) for name, (calls, usec) in sorted(nested[variant].items(), key=lambda kv: -kv[1][1])
                              if name not in ("evalsha", "config|resetstat", "info", "flushall"))
            print("  %-17s EVALSHA us per order: median %.2f (rounds %s); redis-server CPU us per order: median %.2f (rounds %s);"
                  " inside the script, last round: %s"
                  % (variant, statistics.median(values), ", ".join("%.1f" % v for v in values), statistics.median(cpu[variant]),
                     ", ".join("%.1f" % v for v in cpu[variant]), inner))
        base = statistics.median(results["plain"])
        print("  plain / escaped: %.3f" % (base / statistics.median(results["escaped"])))
        for name in variants[2:]:
            script = statistics.median(results[name]) - base
            process = statistics.median(cpu[name]) - statistics.median(cpu["plain"])
            # The machine's speed drifts within seconds: the ratio of the two variants within each round (run
            # back to back) is steadier than the ratio of their medians over all rounds.
            paired = sorted(other / mine for other, mine in zip(results[name], results["plain"]))
            paired_cpu = sorted(other / mine for other, mine in zip(cpu[name], cpu["plain"]))
            print("  %-17s %+.2f us per order against plain in the script (%+.0f%%), %+.2f us of redis-server CPU (%+.0f%%);"
                  " paired by round, %s / plain: EVALSHA median %.3f (%.3f-%.3f), CPU median %.3f"
                  % (name, script, 100 * script / base, process, 100 * process / statistics.median(cpu["plain"]),
                     name, statistics.median(paired), paired[0], paired[-1], statistics.median(paired_cpu)))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _pings(port):
    try:
        return Redis(port, timeout=1)("PING") == "PONG"
    except OSError:
        return False


if __name__ == "__main__":
    main()
