"""The workload: a sale opened through the admin API, then many customers, each one intent (one
Idempotency-Key) sent through haproxy and retried on 429/503/unknown outcomes as the sale page retries
(Retry-After, doubling backoff, 6 attempts), every attempt recorded in the `History` the checker reads.
The liveness sweep (see `liveness`) sends its customers with `run_customer` too, with shorter waits."""

import http.client as httpclient
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .clients import request, token, wait_until


class History:
    def __init__(self, attempts=None):
        self.lock = threading.Lock()
        self.attempts = list(attempts or [])  # dicts: customer, key, quantity, sent, status, order, latency

    def record(self, **entry):
        with self.lock:
            self.attempts.append(entry)

    def copy(self):
        """The attempts recorded so far, as a history of their own."""
        with self.lock:
            return History(self.attempts)


# The sale page's retry policy (Pages/sale.js, flashsale.js `backoffMilliseconds`): at most 6 attempts under one
# Idempotency-Key; after a 429/503 with Retry-After, that many seconds (capped) plus up to 250 ms of jitter;
# otherwise (no answer, or no Retry-After) a doubling wait from 1 s, capped at 15 s, with jitter.
PAGE_ATTEMPTS = 6
PAGE_BASE_SECONDS, PAGE_CAP_SECONDS = 1.0, 15.0
# The liveness sweep's policy: more attempts, shorter waits (it must sell out within its own deadline).
SWEEP_ATTEMPTS = 8

DEFINITIVE = (201, 202, 409, 400, 401, 404)


def page_wait(attempt, retry_after):
    """Seconds before retry number `attempt` (1-based), as the sale page waits."""
    if retry_after is not None:
        return min(PAGE_CAP_SECONDS, retry_after) + random.random() * 0.25
    ceiling = min(PAGE_CAP_SECONDS, PAGE_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + random.random() * ceiling / 2


def sweep_wait(attempt, retry_after):
    return min((0.2 + random.random() * 0.4) * attempt, 1.5)


def run_customer(lb_port, sale, customer, quantity, history, deadline, page=False):
    """One customer's intent: a single Idempotency-Key, retried on 429/503/unknown outcomes until a definite
    answer, the attempt bound or the deadline; waits between attempts as the sale page does (`page`), or
    the sweep's shorter ones."""
    key = "buy-" + customer
    bearer = token(customer)
    body = {"quantity": quantity, "delivery": {"name": "Customer " + customer, "phone": "5550100",
                                               "address": "1 Chaos Street"}}
    attempts, wait = (PAGE_ATTEMPTS, page_wait) if page else (SWEEP_ATTEMPTS, sweep_wait)
    for attempt in range(1, attempts + 1):
        if time.monotonic() > deadline:
            return
        sent = time.time()
        started = time.monotonic()
        headers = {}
        try:
            status, reply = request(lb_port, "POST", "/sales/%s/orders" % sale, body, bearer,
                                    {"Idempotency-Key": key}, timeout=4.0, reply_headers=headers)
        except (OSError, httpclient.HTTPException):
            status, reply = "unknown", None
        order = reply.get("orderId") if isinstance(reply, dict) else None
        problem = reply if isinstance(reply, dict) and status not in (201, 202) else {}
        history.record(customer=customer, key=key, quantity=quantity, sent=sent, status=status, order=order,
                       latency=time.monotonic() - started, attempt=attempt, code=problem.get("code"),
                       detail=problem.get("detail"))
        if status in DEFINITIVE:
            return
        try:
            retry_after = float(headers["retry-after"]) if "retry-after" in headers else None
        except ValueError:
            retry_after = None
        time.sleep(max(0.0, min(wait(attempt, retry_after), deadline - time.monotonic())))


def open_sale(topology, sale, stock):
    """Creates the sale through haproxy (limit 2 per customer, 600 s long), opening 2 s later; waits until open."""
    admin = token("chaos-admin", admin=True)
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    status, reply = request(topology.lb_port, "POST", "/admin/sales",
                            {"id": sale, "name": "Chaos phones", "stock": stock, "startsAt": starts,
                             "durationSeconds": 600, "perCustomerLimit": 2}, admin)
    if status != 201:
        raise RuntimeError("creating the sale answered %s %s" % (status, reply))
    time.sleep(2.2)  # the sale opens 2 s after creation
    wait_until(lambda: request(topology.lb_port, "GET", "/sales/%s" % sale, timeout=2)[1].get("status") == "open", 10)


def run_workload(topology, sale, intents, workers, deadline, history, on_start, arrival_seconds=6.0):
    """Sends every intent `(customer, quantity)` on `workers` threads, retried as the sale page does, and
    returns when all are answered or past `deadline`. Customers arrive evenly over `arrival_seconds` (in 60
    steps); `on_start()` runs first (it starts the fault), so the fault lands in the middle of the sale."""
    customers = len(intents)
    step = arrival_seconds / 60.0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        on_start()
        futures = []
        for index, (customer, quantity) in enumerate(intents):
            futures.append(pool.submit(run_customer, topology.lb_port, sale, customer, quantity, history, deadline,
                                       True))
            if index % max(1, customers // 60) == 0:
                time.sleep(step)
        for future in futures:
            future.result()
