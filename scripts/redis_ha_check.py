#!/usr/bin/env python3
"""The ledger's Redis high availability (`make test`), with the Kubernetes component's own scripts.

Three Redis pods and three Sentinel pods run k8s/components/redis/redis-start.sh and sentinel-start.sh (the
files themselves, by `sh`, with the environment of a pod: the component's `flashsale-redis-env` literals,
random ACL passwords, per-pod data directories that outlive restarts as PVCs do), all six started at once, each
on a loopback address that /etc/hosts gives its pod DNS name (lines marked `# redis-ha-check`, removed at
exit). A real `flashsale serve` follows the Sentinels as the `flashsale` ACL user with one replica ack per
commit, while a client keeps ordering (one Idempotency-Key per order, retried on 503 and network errors).
Each step is bounded in time and prints one line with its figure:
  1. topology: redis-0 primary with 2 connected replicas, named by every Sentinel, each Sentinel seeing both
     replicas and the 2 other Sentinels (before that, a failover would leave a replica unreconfigured for
     failover-timeout, 30 s); the ACL in force (an
     unauthenticated SET or PING answered NOAUTH, the readiness probes the StatefulSets declare passing (they
     log in) and failing on a killed member, the `flashsale` user confined to fs:* keys, the Sentinels refuse
     unauthenticated commands);
  2. orders flow through the service;
  3. primary lost (SIGKILL redis-0): the Sentinels promote a replica, orders continue (the longest time
     without a 201 is reported); redis-0 restarted alone rejoins as a replica of the promoted member;
  4. all six restarted at once (SIGKILL, then started together): the promoted member stays primary, redis-0
     starts as its replica (no stale primary crowned), no member drops part of its AOF at load, orders flow
     again;
  5. a replica restarted alone rejoins;
  6. planned hand-over: redis-prestop.sh on the primary moves the role to a replica; the pod, stopped with
     SIGTERM and started again, rejoins as a replica;
  7. no acknowledged order lost: every 201 reads back (GET /orders/{id}) and is in the final primary's
     ledger, where pool + leased + sold == stock and sold >= the units acknowledged; the ACL refused the
     service nothing (no NOPERM in its log).
About 55 s (SENTINEL_DOWN_AFTER_MS=2000). On a failure the pods' and the service's last log lines are printed
and the logs kept. Needs root (/etc/hosts), redis-server and redis-cli; every process it starts is stopped at exit (also on
Ctrl-C or SIGTERM).

    .venv/bin/python scripts/redis_ha_check.py --bin .build/debug/flashsale
"""
import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_ha import Failure  # noqa: E402
from redis_ha.orders import Client, Service  # noqa: E402
from redis_ha.pods import COMPONENT, REDIS_PORT, SENTINEL_PORT, Cluster, cli  # noqa: E402

LEDGER = """local stock = tonumber(redis.call('HGET', KEYS[1], 'stock'))
local leased, all = 0, redis.call('HGETALL', KEYS[4])
for i = 2, #all, 2 do leased = leased + cjson.decode(all[i]).r end
local missing = 0
for i = 1, #ARGV do missing = missing + (1 - redis.call('HEXISTS', KEYS[5], ARGV[i])) end
return {stock, tonumber(redis.call('GET', KEYS[2])), tonumber(redis.call('GET', KEYS[3])), leased, missing}"""


def say(text):
    print("redis-ha-check: " + text, flush=True)


def check(condition, message):
    if not condition:
        raise Failure(message)


def started_as(pod, primary):
    """The pod's log of this incarnation says it started as a replica of `primary`, never as the primary."""
    text = pod.text()
    check("starts as the primary" not in text, "%s (start %d) crowned itself: %s" % (pod.name, pod.incarnation, text[:300]))
    check("starts as a replica of %s" % primary.host in text,
          "%s (start %d) did not start as a replica of %s" % (pod.name, pod.incarnation, primary.host))


def rejoin(cluster, pod, primary, what):
    pod.start()
    _, took = cluster.wait("%s rejoining as a replica of %s" % (what, primary.name),
                           lambda: cluster.replica_of(pod, primary) and cluster.healthy(primary), 60)
    started_as(pod, primary)
    return took


def probe(pod, manifest):
    """Runs the readiness probe the StatefulSet in `manifest` declares, in the pod's environment, as the kubelet
    would inside the pod; only the address changes (the pod's loopback address here, 127.0.0.1 in the pod)."""
    with open(os.path.join(COMPONENT, manifest)) as f:
        objects = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "StatefulSet"]
    command = objects[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    command = [part.replace("redis-cli", "redis-cli -h %s" % pod.address) for part in command]
    return subprocess.run(command, env=pod.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=10).returncode


def run(cluster, service, state):
    r0 = cluster.redis[0]
    # 1. Topology and ACL.
    for pod in cluster.pods:
        pod.start()
    _, took = cluster.wait("flashsale-redis-0 as the primary of 2 connected replicas, named by every Sentinel",
                           lambda: cluster.healthy(r0) and (len(cluster.role(r0)) - 2) // 3 == 2, 60)
    _, refused = cli(r0.host, REDIS_PORT, "set", "x", "y")
    check(refused.startswith("NOAUTH"), "an unauthenticated SET answered %r" % refused)
    # The kubelet's readiness probes, as the StatefulSets declare them: pass on a live member and Sentinel.
    code, pong = probe(r0, "redis.yaml"), "PONG"
    check(code == 0, "the member's readiness probe exited %d on a live member" % code)
    check(probe(cluster.sentinels[0], "sentinel.yaml") == 0, "the Sentinel's readiness probe failed on a live Sentinel")
    _, anonymous = cli(r0.host, REDIS_PORT, "ping")
    check(anonymous.startswith("NOAUTH"), "an anonymous PING answered %r (the probe must log in to mean anything)" % anonymous)
    _, outside = cli(r0.host, REDIS_PORT, "set", "x", "y", user="flashsale",
                     password=cluster.passwords["REDIS_SERVICE_PASSWORD"])
    check(outside.startswith("NOPERM"), "the flashsale user's SET outside fs:* answered %r" % outside)
    _, sentinel = cli(cluster.sentinels[0].host, SENTINEL_PORT, "sentinel", "masters")
    check(sentinel.startswith("NOAUTH"), "a Sentinel answered an unauthenticated SENTINEL MASTERS with %r" % sentinel[:80])
    say("1. topology: flashsale-redis-0 primary with 2 connected replicas, named by the 3 Sentinels, %.1f s after "
        "the start; ACL: unauthenticated SET refused (%s), the readiness probes pass (%s) and an anonymous PING does not, "
        "flashsale's SET outside fs:* refused (%s), Sentinel refused an unauthenticated command (%s)"
        % (took, refused.split(" ")[0], pong.split(" ")[0], outside.split(" ")[0], sentinel.split(" ")[0]))

    # 2. Orders through the service.
    service.start()
    sale = "ha-%d" % int(time.time())
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    status, reply = service.request("POST", "/admin/sales", {"id": sale, "name": "HA check", "stock": 1000000,
                                    "startsAt": starts, "durationSeconds": 3600, "perCustomerLimit": 100},
                                    service.token("ha-admin", admin=True), timeout=15)
    check(status == 201, "POST /admin/sales answered %s %s" % (status, reply))
    with ThreadPoolExecutor(4) as pool:
        customers = list(pool.map(lambda n: ("ha-customer-%03d" % n, service.token("ha-customer-%03d" % n)), range(100)))
    client = state["client"] = Client(service, sale, customers, limit=100)
    flowing = time.monotonic()
    client.start()
    client.wait_flowing("orders through the service", flowing, 30, count=50)
    say("2. orders flow: %d acknowledged in %.1f s (sale %s, %d customers in turn, ~30 orders/s)"
        % (len(client.acks), time.monotonic() - flowing, sale, len(customers)))

    # 3. The primary lost; then redis-0 restarted alone.
    lost = time.monotonic()
    marks = [(lost, "step 3")]
    r0.stop()
    check(probe(r0, "redis.yaml") != 0, "the member's readiness probe passed on a killed member")
    promoted, promotion = cluster.wait("a replica promoted and named by every Sentinel", lambda: cluster.successor(r0), 30)
    promoted_at = time.monotonic()
    client.wait_flowing("orders after the promotion", promoted_at, 45)
    outage = client.gap(lost, promoted_at)
    rejoined = rejoin(cluster, r0, promoted, "flashsale-redis-0 restarted alone")
    say("3. primary lost (SIGKILL flashsale-redis-0): %s promoted, named by every Sentinel after %.1f s; orders "
        "continued, longest time without a 201 %.1f s; flashsale-redis-0 restarted alone rejoined as its replica "
        "in %.1f s" % (promoted.name, promotion, outage, rejoined))
    state["promotion"], primary = promotion, promoted

    # 4. All six restarted at once.
    down = time.monotonic()
    marks.append((down, "step 4"))
    for pod in cluster.pods:
        pod.stop()
    for pod in cluster.pods:
        pod.start()
    _, took = cluster.wait("%s primary again after all six restarted, every other member its replica" % primary.name,
                           lambda: cluster.healthy(primary), 90)
    check("starts as the primary" in primary.text(), "%s did not start as the primary" % primary.name)
    for pod in cluster.redis:
        if pod is not primary:
            started_as(pod, primary)
        # A member that drops part of its AOF at load says so (e.g. MULTI/EXEC refused by the ACL).
        check("CRITICAL" not in pod.text(), "%s's AOF load: %s" % (pod.name, next(
            (line for line in pod.text().splitlines() if "CRITICAL" in line), "")[:300]))
    back = time.monotonic()
    client.wait_flowing("orders after all six restarted", back, 60)
    say("4. all six restarted at once: %s primary again after %.1f s, flashsale-redis-0 started as its replica (no "
        "stale primary); orders flowing again, longest time without a 201 %.1f s"
        % (primary.name, took, client.gap(down, back)))

    # 5. A replica restarted alone.
    replica = [p for p in cluster.redis if p is not primary][-1]
    marks.append((time.monotonic(), "step 5"))
    replica.stop()
    took = rejoin(cluster, replica, primary, "%s restarted alone" % replica.name)
    say("5. replica restarted alone: %s (SIGKILL, started again) rejoined as a replica of %s in %.1f s"
        % (replica.name, primary.name, took))

    # 6. Planned hand-over: the kubelet runs the preStop hook, then sends SIGTERM.
    handing = time.monotonic()
    marks.append((handing, "step 6"))
    try:
        done = subprocess.run(["sh", os.path.join(COMPONENT, "redis-prestop.sh")], env=primary.env,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure("redis-prestop.sh ran over 60 s")
    handover = time.monotonic() - handing
    said = (done.stdout + done.stderr).strip().replace("\n", " / ")
    check(done.returncode == 0 and "handed the primary role over" in said, "redis-prestop.sh: %s" % said)
    successor, _ = cluster.wait("the Sentinels naming a new primary after the hand-over",
                                lambda: cluster.successor(primary), 30)
    check(cluster.role(primary)[:1] != ["master"], "%s still answers ROLE master after its preStop" % primary.name)
    primary.stop(signal.SIGTERM, timeout=40)
    took = rejoin(cluster, primary, successor, "%s after its planned restart" % primary.name)
    client.wait_flowing("orders after the hand-over", time.monotonic(), 45)
    say("6. planned hand-over: redis-prestop.sh on %s handed the primary role to %s in %.1f s (%s); stopped "
        "(SIGTERM) and started again, it rejoined as a replica in %.1f s; longest time without a 201 %.1f s"
        % (primary.name, successor.name, handover, said, took, client.gap(handing, time.monotonic())))
    state["handover"], primary = handover, successor

    # 7. No acknowledged order lost.
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
        _, out = cli(primary.host, REDIS_PORT, "eval", LEDGER, "5", *keys, *ids[first:first + 500], user="flashsale",
                     password=cluster.passwords["REDIS_SERVICE_PASSWORD"], timeout=20)
        numbers = out.splitlines()
        check(len(numbers) == 5 and all(n.lstrip("-").isdigit() for n in numbers), "reading the ledger: %s" % out[:300])
        stock, pool_units, sold, leased, chunk_missing = map(int, numbers)
        missing += chunk_missing
    check(missing == 0, "%d acknowledged orders are missing from the ledger on %s" % (missing, primary.name))
    check(pool_units + leased + sold == stock, "ledger invariant broken: pool %d + leased %d + sold %d != stock %d"
          % (pool_units, leased, sold, stock))
    check(sold >= len(ids), "sold %d < %d units acknowledged" % (sold, len(ids)))
    say("7. no acknowledged order lost: %d of %d orders acknowledged (201) read back 200 from the service and are in "
        "%s's ledger; pool %d + leased %d + sold %d == stock %d, sold >= %d acknowledged (%d intents unresolved, "
        "%d retries)" % (len(ids), len(ids), primary.name, pool_units, leased, sold, stock, len(ids),
                         client.unresolved, client.retries))
    return len(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    started, work = time.monotonic(), tempfile.mkdtemp(prefix="redis-ha-check-")
    state, passed = {"client": None}, False
    cluster = service = None
    try:
        cluster = Cluster(work)
        atexit.register(cluster.hosts.remove)
        service = Service(args.bin, work, cluster)
        cluster.check_free()
        cluster.hosts.add()
        acknowledged = run(cluster, service, state)
        say("PASS: %d orders acknowledged, 0 lost; primary lost: promoted in %.1f s; planned hand-over %.1f s; "
            "%.0f s in all" % (acknowledged, state["promotion"], state["handover"], time.monotonic() - started))
        passed = True
    except Exception as failure:  # noqa: BLE001 - any error fails the check, after the logs are shown
        if not isinstance(failure, Failure):
            traceback.print_exc()
        for pod in cluster.pods if cluster else []:
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
        if cluster:
            cluster.stop_all()
            cluster.hosts.remove()
        if passed:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
