#!/usr/bin/env python3
"""How far `GET /sales/{id}/stock` trails the ledger, during an order load and right after it (API.md: 100 ms).

One release instance and redis-server (crowd.Topology), a sale of 10,000,000 units, wrk (`-t1 -c200`, 6 s)
posting orders for 40,000 pre-signed customers in turn. Every 250 ms during the load the script reads /stock and
then the ledger's `sold` (GET fs:{sale}:sold): the difference is an upper bound of how stale /stock was (the
ledger is read after /stock answered). Right after wrk stops it reads /stock three times (0, 60, 120 ms) next to
the ledger. Bounded: wrk -d6s, every request has a timeout, every process is stopped at the end.

    .venv/bin/python scripts/freshness.py --bin .build/release/flashsale
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crowd  # noqa: E402 - Topology, token, request, redis_call

BODY = '{"quantity":1,"delivery":{"name":"Ada","phone":"+44 20 7946 0000","address":"1 Main St"}}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=os.path.join(crowd.ROOT, ".build/release/flashsale"))
    parser.add_argument("--customers", type=int, default=40000)
    args = parser.parse_args()
    procs, work = crowd.Processes(), tempfile.mkdtemp(prefix="freshness-")
    topology = crowd.Topology(procs, args.bin, work, 1, "engine")
    try:
        port, sale = topology.port, "fresh-%d" % int(time.time())
        starts = int(time.time() * 1000) + 1000
        status, body = crowd.request(port, "POST", "/admin/sales", bearer=crowd.token("freshness-admin", admin=True), body={
            "id": sale, "name": "freshness", "stock": 10000000, "startsAt": crowd.rfc3339_ms(starts),
            "durationSeconds": 600, "perCustomerLimit": 2}, timeout=10)
        if status != 201:
            raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))
        time.sleep(max(0.0, starts / 1000.0 - time.time() + 0.3))
        with open(os.path.join(work, "tokens.txt"), "w") as tokens:
            for index in range(args.customers):
                tokens.write(crowd.token("fresh-%06d" % index) + "\n")
        script = os.path.join(work, "orders.lua")
        with open(script, "w") as lua:
            lua.write('local toks, i = {}, 0\nfor line in io.lines("%s") do toks[#toks + 1] = line end\n'
                      "request = function()\n  i = i %% #toks + 1\n"
                      '  return wrk.format("POST", "/sales/%s/orders", {["Authorization"] = "Bearer " .. toks[i], '
                      '["Content-Type"] = "application/json"}, \'%s\')\nend\n' % (os.path.join(work, "tokens.txt"), sale, BODY))
        reader = crowd.token("freshness-reader")

        def read():
            status, stock = crowd.request(port, "GET", "/sales/%s/stock" % sale, bearer=reader, timeout=5)
            ledger = int(crowd.redis_call(topology.redis_port, "GET", "fs:{%s}:sold" % sale) or 0)
            return (stock["sold"] if status == 200 else None), ledger

        samples, stop = [], threading.Event()

        def sample():
            for _ in range(200):  # bounded: the load lasts 6 s
                if stop.is_set():
                    return
                samples.append(read())
                time.sleep(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        wrk = subprocess.run(["wrk", "-t1", "-c200", "-d6s", "-s", script, "http://127.0.0.1:%d" % port],
                             capture_output=True, text=True, timeout=60)
        stop.set()
        sampler.join()
        print("wrk: " + "; ".join(line.strip() for line in wrk.stdout.splitlines() if "Requests/sec" in line or "requests in" in line))
        lags = sorted(ledger - sold for sold, ledger in samples if sold is not None)
        if lags:
            print("during the load, %d reads: ledger sold minus /stock sold: min %d, median %d, max %d orders"
                  % (len(lags), lags[0], lags[len(lags) // 2], lags[-1]))
        after = []
        for delay in (0, 0.06, 0.06):
            time.sleep(delay)
            after.append(read())
        print("right after the load, at 0 / 60 / 120 ms (/stock sold, ledger sold): %s" % after)
    finally:
        topology.stop()
        procs.stop_all()


if __name__ == "__main__":
    main()
