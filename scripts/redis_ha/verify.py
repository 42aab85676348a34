"""What redis_ha_check.py and redis_cluster_check.py share: running a check (root, the binary, signals, logs on
failure, clean-up), and the last step of both, proving that no acknowledged order was lost."""

import argparse
import atexit
import os
import shutil
import signal
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from . import Failure
from .orders import Client
from .pods import cli

# Read on the master of the sale, as the `flashsale` user: stock, pool, sold, units leased, and how many of the
# order ids in ARGV the `orders` hash lacks.
LEDGER = """local stock = tonumber(redis.call('HGET', KEYS[1], 'stock'))
local leased, all = 0, redis.call('HGETALL', KEYS[4])
for i = 2, #all, 2 do leased = leased + cjson.decode(all[i]).r end
local missing = 0
for i = 1, #ARGV do missing = missing + (1 - redis.call('HEXISTS', KEYS[5], ARGV[i])) end
return {stock, tonumber(redis.call('GET', KEYS[2])), tonumber(redis.call('GET', KEYS[3])), leased, missing}"""


def check(condition, message):
    if not condition:
        raise Failure(message)


def orders_flowing(service, prefix, state):
    """Starts the service, creates an open sale of 1,000,000 units (limit 100), and 100 customers who order
    through it in turn (a `Client`, kept in state["client"]) until 50 orders are acknowledged (at most 30 s).
    Answers (sale id, customers, client, seconds until 50 were acknowledged)."""
    service.start()
    sale = "%s-%d" % (prefix, int(time.time()))
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    status, reply = service.request("POST", "/admin/sales", {"id": sale, "name": "%s check" % prefix, "stock": 1000000,
                                    "startsAt": starts, "durationSeconds": 3600, "perCustomerLimit": 100},
                                    service.token("%s-admin" % prefix, admin=True), timeout=15)
    check(status == 201, "POST /admin/sales answered %s %s" % (status, reply))
    with ThreadPoolExecutor(4) as pool:
        customers = list(pool.map(lambda n: ("%s-customer-%03d" % (prefix, n), service.token("%s-customer-%03d" % (prefix, n))),
                                  range(100)))
    client = state["client"] = Client(service, sale, customers, limit=100)
    flowing = time.monotonic()
    client.start()
    client.wait_flowing("orders through the service", flowing, 30, count=50)
    return sale, customers, client, time.monotonic() - flowing


def no_order_lost(service, client, customers, marks, sale, host, port, password):
    """Every acknowledged order reads back (GET /orders/{id} as its customer) and is in the ledger at `host`,
    where pool + leased + sold == stock and sold covers the units acknowledged; the ACL refused the service
    nothing. Answers (order ids, stock, pool, sold, leased)."""
    client.stop()
    with open(service.log, errors="replace") as f:
        refused = [line for line in f if "NOPERM" in line]
    check(not refused, "the ACL refused the service a command (%d times): %s" % (len(refused), refused[:1]))
    check(not client.unexpected, "unexpected answers to orders: %s" % "; ".join(client.unexpected[:5]))
    tokens = dict(customers)

    def read_back(ack):
        """GET /orders/{id} as the order's customer (429 retried: 20 requests/s per customer)."""
        for _ in range(20):
            status, reply = service.request("GET", "/orders/%s" % ack[1], bearer=tokens[ack[3]], timeout=10)
            if status != 429:
                break
            time.sleep(0.5)
        ok = status == 200 and reply.get("orderId") == ack[1] and reply.get("customerId") == ack[3] \
            and reply.get("status") == "confirmed"
        during = ([label for at, label in marks if at <= ack[0]] or ["step 2"])[-1]
        return None if ok else "%s (acknowledged during %s): %s %s" % (ack[1], during, status, reply)
    with ThreadPoolExecutor(4) as pool:
        lost_orders = [problem for problem in pool.map(read_back, client.acks) if problem]
    check(not lost_orders, "%d acknowledged orders do not read back: %s" % (len(lost_orders), "; ".join(lost_orders[:5])))
    keys = ["fs:{%s}:%s" % (sale, k) for k in ("meta", "pool", "sold", "leases", "orders")]
    ids = [ack[1] for ack in client.acks]
    stock = pool_units = sold = leased = None
    missing = 0
    for first in range(0, max(len(ids), 1), 500):
        _, out = cli(host, port, "eval", LEDGER, "5", *keys, *ids[first:first + 500], user="flashsale",
                     password=password, timeout=20)
        numbers = out.splitlines()
        check(len(numbers) == 5 and all(n.lstrip("-").isdigit() for n in numbers), "reading the ledger: %s" % out[:300])
        stock, pool_units, sold, leased, chunk_missing = map(int, numbers)
        missing += chunk_missing
    check(missing == 0, "%d acknowledged orders are missing from the ledger on %s" % (missing, host))
    check(pool_units + leased + sold == stock, "ledger invariant broken: pool %d + leased %d + sold %d != stock %d"
          % (pool_units, leased, sold, stock))
    check(sold >= len(ids), "sold %d < %d units acknowledged" % (sold, len(ids)))
    return ids, stock, pool_units, sold, leased


def main(doc, name, build, run, passed_line):
    """A check's command line and life: `build(work, binary)` answers (pods, service) (pods has .pods,
    .hosts, .stop_all()), `run(pods, service, state)` the steps, `passed_line(state, seconds)` the PASS line.
    Needs root (the pods' names go to /etc/hosts). Logs kept on failure; every process stopped at exit."""
    def say(text):
        print("%s: %s" % (name, text), flush=True)
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--bin", default=".build/debug/flashsale", help="the flashsale binary")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("FAIL: must run as root (it adds the pods' names to /etc/hosts)")
        return 1
    if not os.access(args.bin, os.X_OK):
        say("FAIL: %s is not an executable flashsale binary" % args.bin)
        return 1

    def interrupted(number, _frame):
        raise Failure("interrupted by signal %d" % number)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, interrupted)
    started, work = time.monotonic(), tempfile.mkdtemp(prefix=name + "-")
    state, passed = {"client": None}, False
    pods = service = None
    try:
        pods, service = build(work, args.bin)
        atexit.register(lambda: pods.hosts.remove())
        pods.hosts.add()
        run(pods, service, state)
        say("PASS: " + passed_line(state, time.monotonic() - started))
        passed = True
    except Exception as failure:  # noqa: BLE001 - any error fails the check, after the logs are shown
        if not isinstance(failure, Failure):
            traceback.print_exc()
        for pod in pods.pods if pods else []:
            if pod.log:
                print("  %s (start %d), last lines:\n%s" % (pod.name, pod.incarnation, pod.tail()), end="", flush=True)
        if service and service.proc:
            print("  flashsale serve, last lines:\n" + service.tail(), end="")
        say("FAIL: %s (logs in %s)" % (failure, work))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # the clean-up below runs to its end
        if state["client"]:
            state["client"].stopping.set()
        if service:
            service.stop()
        if pods:
            pods.stop_all()
            pods.hosts.remove()
        if passed:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1
