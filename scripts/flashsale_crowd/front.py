"""What the front (haproxy) did to the arrival order: from its request log, the order in which it read the
customers and handed them to the instances; from the instances' metrics, how late the engine saw them."""

import re

from flashsale_chaos.clients import request

from .figures import quantiles


def front_lag(ports):
    """How late the instances saw their customers: `flashsale_front_lag_seconds` (X-Request-Start to the
    engine) of every instance summed, as the bucket bounds holding the median and the 95th percentile (ms).
    The engine can order across instances only the customers it has seen."""
    buckets = {}
    for port in ports:
        try:
            status, text = request(port, "GET", "/metrics", timeout=10)
        except OSError:
            return None
        if status != 200 or not isinstance(text, str):
            return None
        for match in re.finditer(r'^flashsale_front_lag_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M):
            bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
            buckets[bound] = buckets.get(bound, 0) + int(match.group(2))
    if not buckets or not buckets[float("inf")]:
        return None
    total, bounds = buckets[float("inf")], sorted(buckets)
    def at(q):
        bound = next(b for b in bounds if buckets[b] >= q * total)
        return "<= %g" % (bound * 1000) if bound != float("inf") else "> %g" % (bounds[-2] * 1000)
    return {"orders": total, "p50": at(0.5), "p95": at(0.95)}


def front_order(log_path, sends, winners, k):
    """What the front (haproxy) did to the arrival order. From its request log: read = when haproxy had
    read a customer's request, handed = read + queue + connect time, when the instance could first read it
    (ms resolution: haproxy's Tw and Tc are in ms). An engine serving exactly in hand-over order would score
    `ceiling` = |first K by send AND first K by hand-over| / K; `precisionByHandOver` is the engine's own
    FCFS against the order it was handed (winners among the first K by hand-over). Ties keep send order
    (the ceiling is an upper bound)."""
    send_us = {s[3]: s[0] for s in sends}
    read, handed, server = {}, {}, {}
    with open(log_path, errors="replace") as handle:
        for line in handle:
            match = re.search(r"FRONT (\d+) (-?\d+) (-?\d+) \{crowd-(\d+)\}(?: (\S+))?", line)
            if not match:
                continue
            rx, tw, tc, customer = (int(g) for g in match.groups()[:4])
            if customer in send_us and tw >= 0 and tc >= 0:
                read[customer], handed[customer] = rx, rx + (tw + tc) * 1000
                server[customer] = match.group(5)
    front = {"customersLogged": len(handed)}
    if len(handed) < k:
        return front
    by_send = [c for c in sorted(send_us, key=send_us.get) if c in handed]
    first_send = set(by_send[:k])
    by_read = sorted(by_send, key=lambda c: (read[c], send_us[c]))
    by_handed = sorted(by_send, key=lambda c: (handed[c], send_us[c]))
    front["readOrderCeiling"] = round(len(first_send & set(by_read[:k])) / k, 4)
    front["ceiling"] = round(len(first_send & set(by_handed[:k])) / k, 4)
    front["precisionByHandOver"] = round(len(set(by_handed[:k]) & set(winners)) / k, 4)
    delays = sorted((handed[c] - send_us[c]) / 1000.0 for c in by_send[:k])
    front["firstKSendToHandOverMs"] = quantiles(delays)
    # Who among the first K by send time holds no order: their send rank, the instance haproxy gave them to
    # (its server name), and how long after their send it did (at most 50, earliest first).
    front["firstKLosers"] = [{"rank": rank + 1, "server": server.get(c), "handOverMs": round((handed[c] - send_us[c]) / 1000.0, 1)}
                             for rank, c in enumerate(by_send[:k]) if c not in winners][:50]
    return front


