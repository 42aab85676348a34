"""The pieces of scripts/redis_ha_check.py: `pods` runs k8s/components/redis's start scripts as pods on
loopback addresses, `orders` runs `flashsale serve` and a client that keeps ordering."""


class Failure(Exception):
    """A failed check: redis-ha-check prints `redis-ha-check: FAIL: <message>` and exits 1."""
