"""The sale under measurement: created through `POST /admin/sales`, and its ledger read straight from Redis
(`fs:{sale}:meta`, `:sold`, `:pool`, `:stats`, `:orders`), so that nobody is taken on the word of an HTTP
answer."""

import json
import time

from flashsale_chaos.clients import pairs, request

from . import REDIS_TIMEOUT_SECONDS
from .clients import redis_call


def rfc3339_ms(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def create_sale(port, admin, sale_id, name, stock, starts_ms, duration_seconds, limit):
    status, body = request(port, "POST", "/admin/sales", bearer=admin, body={
        "id": sale_id, "name": name, "stock": stock, "startsAt": rfc3339_ms(starts_ms),
        "durationSeconds": duration_seconds, "perCustomerLimit": limit})
    if status != 201:
        raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))


def ledger(port, command, sale_id, key, timeout=REDIS_TIMEOUT_SECONDS):
    """One Redis command on one of the sale's ledger keys (`fs:{sale_id}:key`)."""
    return redis_call(port, command, "fs:{%s}:%s" % (sale_id, key), timeout=timeout)


def meta(port, sale_id):
    return pairs(ledger(port, "HGETALL", sale_id, "meta"))


def closed(port, sale_id):
    return meta(port, sale_id).get("status") == "closed"


def sold(port, sale_id):
    return int(ledger(port, "GET", sale_id, "sold") or 0)


def orders(port, sale_id, timeout):
    """Every order record of the sale (confirmed or not), parsed."""
    return [json.loads(v) for v in (ledger(port, "HVALS", sale_id, "orders", timeout=timeout) or [])]
