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
import os
import signal
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_ha import Failure, verify  # noqa: E402
from redis_ha.orders import Service  # noqa: E402
from redis_ha.pods import COMPONENT, REDIS_PORT, SENTINEL_PORT, Cluster, cli  # noqa: E402
from redis_ha.verify import check  # noqa: E402


def say(text):
    print("redis-ha-check: " + text, flush=True)


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
    sale, customers, client, flowing = verify.orders_flowing(service, "ha", state)
    say("2. orders flow: %d acknowledged in %.1f s (sale %s, %d customers in turn, ~30 orders/s)"
        % (len(client.acks), flowing, sale, len(customers)))

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
    ids, stock, pool_units, sold, leased = verify.no_order_lost(service, client, customers, marks, sale, primary.host,
                                                                REDIS_PORT, cluster.passwords["REDIS_SERVICE_PASSWORD"])
    say("7. no acknowledged order lost: %d of %d orders acknowledged (201) read back 200 from the service and are in "
        "%s's ledger; pool %d + leased %d + sold %d == stock %d, sold >= %d acknowledged (%d intents unresolved, "
        "%d retries)" % (len(ids), len(ids), primary.name, pool_units, leased, sold, stock, len(ids),
                         client.unresolved, client.retries))
    state["acknowledged"] = len(ids)


def build(work, binary):
    cluster = Cluster(work)
    service = Service(binary, work, cluster)
    cluster.check_free()
    return cluster, service


def main():
    return verify.main(__doc__, "redis-ha-check", build, run, lambda state, seconds: (
        "%d orders acknowledged, 0 lost; primary lost: promoted in %.1f s; planned hand-over %.1f s; %.0f s in all"
        % (state["acknowledged"], state["promotion"], state["handover"], seconds)))


if __name__ == "__main__":
    sys.exit(main())
