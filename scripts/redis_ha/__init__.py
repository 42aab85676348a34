"""The pieces of scripts/redis_ha_check.py and redis_cluster_check.py: `pods` runs a Kubernetes component's start
scripts as pods on loopback addresses, `orders` runs `flashsale serve` and a client that keeps ordering, `verify`
what both checks share."""

import time


class Failure(Exception):
    """A failed check: the check prints `<name>: FAIL: <message>` and exits 1."""


def wait(what, predicate, timeout, describe):
    """Polls `predicate` until it answers truthy (then returns that and the seconds it took) or fails, saying
    `describe()` (the state of the pods)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answer = predicate()
        if answer:
            return answer, time.monotonic() - started
        time.sleep(0.2)
    raise Failure("%s not within %d s (%s)" % (what, timeout, describe()))
