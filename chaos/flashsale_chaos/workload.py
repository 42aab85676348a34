"""The workload: a sale opened through the admin API, then many customers, each one intent (one
Idempotency-Key) sent through haproxy and retried on 429/503/unknown outcomes, every attempt recorded in
the `History` the checker reads. The liveness sweep (see `liveness`) sends its customers with `run_customer`
too."""

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


def run_customer(lb_port, sale, customer, quantity, history, deadline, max_attempts=8):
    """One customer's intent: a single Idempotency-Key, retried on 429/503/unknown outcomes until a definite
    answer, the attempt bound or the deadline."""
    key = "buy-" + customer
    bearer = token(customer)
    body = {"quantity": quantity, "delivery": {"name": "Customer " + customer, "phone": "5550100",
                                               "address": "1 Chaos Street"}}
    for attempt in range(max_attempts):
        if time.monotonic() > deadline:
            return
        sent = time.time()
        started = time.monotonic()
        try:
            status, reply = request(lb_port, "POST", "/sales/%s/orders" % sale, body, bearer,
                                 {"Idempotency-Key": key}, timeout=4.0)
        except (OSError, httpclient.HTTPException):
            history.record(customer=customer, key=key, quantity=quantity, sent=sent, status="unknown", order=None,
                           latency=time.monotonic() - started)
            time.sleep(0.2 + random.random() * 0.3)
            continue
        order = reply.get("orderId") if isinstance(reply, dict) else None
        history.record(customer=customer, key=key, quantity=quantity, sent=sent, status=status, order=order,
                       latency=time.monotonic() - started)
        if status in (201, 202, 409, 400, 401, 404):
            return
        retry_after = 0.2 + random.random() * 0.4
        time.sleep(min(retry_after * (attempt + 1), 1.5))



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


def run_workload(topology, sale, intents, workers, deadline, history, on_start):
    """Sends every intent `(customer, quantity)` on `workers` threads and returns when all are answered or
    past `deadline`. Customers arrive over ~6 s; `on_start()` runs first (it starts the fault), so the fault
    lands in the middle of the sale."""
    customers = len(intents)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        on_start()
        futures = []
        for index, (customer, quantity) in enumerate(intents):
            futures.append(pool.submit(run_customer, topology.lb_port, sale, customer, quantity, history, deadline))
            if index % max(1, customers // 60) == 0:
                time.sleep(0.1)
        for future in futures:
            future.result()
