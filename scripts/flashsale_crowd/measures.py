"""The figures of one crowd run (closed loop): answers by status and code, arrival order from wrk's sends,
the ledger after the sale settled, the winners, FCFS precision, the 201s' latency, and with haproxy in
front what the front did to the order (front.py). Keys starting with "_" hold the per-request rows for
--html and stay out of the JSON report."""

import os
import re

from flashsale_chaos.clients import pairs, request

from . import sale
from .figures import answers_by_status, quantiles, read_lines, total
from .front import front_lag, front_order


def analyse(result, topology, sale_id, out_dir, wrk_summary, open_us, admin):
    warn = result["warnings"]
    threads = wrk_summary["threads"]
    _count_answers(result, threads)
    sends, answers = _read_rows(result, threads, out_dir)
    lat = wrk_summary["latencyUs"]
    result["latencyMs"] = {k: round(v / 1000.0, 2) for k, v in lat.items()}
    confirmed = _read_ledger(result, topology.redis_port, sale_id)
    _check_sell_out(result, answers)
    try:
        status, summary = request(topology.port, "GET", "/sales/%s/summary" % sale_id, bearer=admin, timeout=10)
        result["serviceSummary"] = summary if status == 200 else {"status": status, "body": summary}
    except Exception as error:  # noqa: BLE001 - a cross-check only
        result["serviceSummary"] = {"error": str(error)}

    # Winners, acknowledged orders, FCFS.
    winners = {}
    by_customer = {}  # a winner's (last) order record: its instance and creation time, for lateWinnersDetail
    for record in confirmed:
        match = re.fullmatch(r"cust-(\d+)", record.get("c", ""))
        if match:
            winners[int(match.group(1))] = winners.get(int(match.group(1)), 0) + int(record.get("q", 0))
            by_customer[int(match.group(1))] = record
        else:
            warn.append("an order of an unexpected customer %r" % record.get("c"))
    acked = [row[3] for row in answers if row[1] == "201"]
    missing = sorted({c for c in acked if not (re.fullmatch(r"cust-(\d+)", c) and int(c[5:]) in winners)})
    result["ackedButMissing"] = len(missing)
    if missing:
        result["ackedButMissingSample"] = missing[:20]
    # A 201 names its customer, so the winners' own latency (send -> 201) is exact; other answers cannot be
    # tied to their request (wrk gives response() no connection), so they only count in wrk's latency.
    sent_at = {s[3]: s[0] for s in sends}
    won_latency = sorted((int(row[0]) - sent_at[int(row[3][5:])]) / 1000.0 for row in answers
                         if row[1] == "201" and re.fullmatch(r"cust-(\d+)", row[3]) and int(row[3][5:]) in sent_at)
    if won_latency:
        result["latency201Ms"] = quantiles(won_latency)
    # the per-request rows, for --html only (keys starting with "_" are left out of the JSON report)
    result["_sends"], result["_answers"] = sends, answers
    k = len(winners)
    result["fcfs"] = _fcfs(result, threads, sends, winners, by_customer)
    result["winners"] = k
    if topology.haproxy and k:
        result["front"] = front_order(os.path.join(topology.workdir, "haproxy.log"), sends, winners, k)
        result["front"]["lagToEngineMs"] = front_lag(topology.instance_ports)


def _count_answers(result, threads):
    """HTTP answers by status and code (the thread counters; the per-answer files are cross-checked), and
    the scripts' own counters: requests before the instant, warm-ups."""
    warn = result["warnings"]
    by_status = answers_by_status(threads)
    result["answers"] = dict(sorted(by_status.items()))
    result["count201"], result["count202"] = total(by_status, "201"), total(by_status, "202")
    result["count409"], result["count503"] = total(by_status, "409"), total(by_status, "503")
    result["countOther"] = sum(by_status.values()) - sum(result["count%s" % s] for s in ("201", "202", "409", "503"))
    not_started = by_status.get("409:SALE_NOT_STARTED", 0)
    early = sum(t["early"] for t in threads)
    if not_started or early:
        warn.append("%d SALE_NOT_STARTED answers, %d requests sent before the instant: those customers were not retried"
                    % (not_started, early))
    result["warmed"] = sum(t.get("warmed", 0) for t in threads)
    result["warmAnswers"] = sum(t.get("warmAnswers", 0) for t in threads)
    if result.get("warm") and (result["warmed"] < result["connections"] or result["warmAnswers"] < result["warmed"]):
        warn.append("--warm: %d of %d connections sent their warm-up, %d answered 200 before the opening"
                    % (result["warmed"], result["connections"], result["warmAnswers"]))


def _read_rows(result, threads, out_dir):
    """Sends (arrival order: (sent us, thread, sequence, customer), sorted) and answers (received us, status,
    code, customer) from the per-thread files, and what they say about the crowd as a whole."""
    warn = result["warnings"]
    sends = []
    for thread in threads:
        rows = read_lines(os.path.join(out_dir, "sends-%d.txt" % thread["tid"]))
        for seq, row in enumerate(rows):
            sends.append((int(row[1]), thread["tid"], seq, int(row[0])))
        if len(rows) != thread["issued"]:
            warn.append("thread %d: sends file has fewer lines than issued requests" % thread["tid"])
    sends.sort()
    answers = []
    for thread in threads:
        rows = read_lines(os.path.join(out_dir, "responses-%d.txt" % thread["tid"]))
        if len(rows) != thread["answered"]:
            warn.append("thread %d: responses file has %d lines, %d answers counted" % (thread["tid"], len(rows), thread["answered"]))
        answers.extend(rows)
    sent_customers = [s[3] for s in sends]
    result["customersSent"] = len(sent_customers)
    result["customersUnsent"] = result["customers"] - len(set(sent_customers))
    if len(set(sent_customers)) != len(sent_customers):
        warn.append("a customer was sent twice")
    result["customersUnanswered"] = sum(t["issued"] + t["filler"] - t["answered"] for t in threads)
    if result["customersUnsent"]:
        warn.append("%d customers were never sent (the crowd outlasted -d; raise --crowd-seconds)" % result["customersUnsent"])
    for name in ("unreserved", "filler", "held"):
        result[name] = sum(t[name] for t in threads)
    if result["held"] < result["connections"]:
        warn.append("only %d of %d connections were established before the opening instant"
                    % (result["held"], result["connections"]))

    first_send = min((t["firstSendUs"] for t in threads if t["firstSendUs"]), default=0)
    last_resp = max((t["lastRespUs"] for t in threads), default=0)
    answered = sum(t["answered"] for t in threads)
    result["firstSendAfterStartsAtMs"] = round((first_send - result["startsAtMs"] * 1000) / 1000.0, 3) if first_send else None
    result["crowdSeconds"] = round((last_resp - first_send) / 1e6, 3) if first_send and last_resp > first_send else None
    result["crowdRequestsPerSecond"] = round(answered / result["crowdSeconds"], 1) if result["crowdSeconds"] else None
    result["lastAnswerAfterStartsAtMs"] = round((last_resp - result["startsAtMs"] * 1000) / 1000.0, 1) if last_resp else None
    return sends, answers


def _read_ledger(result, port, sale_id):
    """The ledger after the crowd (result["ledger"], sold, oversold); returns the confirmed order records."""
    meta = sale.meta(port, sale_id)
    sold = sale.sold(port, sale_id)
    pool = sale.ledger(port, "GET", sale_id, "pool")
    stats = pairs(sale.ledger(port, "HGETALL", sale_id, "stats"))
    records = sale.orders(port, sale_id, timeout=30)
    confirmed = [r for r in records if r.get("s") == "confirmed"]
    result["ledger"] = {"status": meta.get("status"), "closedReason": meta.get("closedReason"), "sold": sold,
                        "pool": int(pool) if pool is not None else None, "orders": len(records),
                        "confirmedOrders": len(confirmed), "confirmedUnits": sum(int(r.get("q", 0)) for r in confirmed),
                        "ordersBySource": {}, "stats": stats,
                        "openedAtMs": int(meta["openedAtMs"]) if "openedAtMs" in meta else None,
                        "soldOutAtMs": int(meta["soldOutAtMs"]) if "soldOutAtMs" in meta else None}
    for record in confirmed:
        source = record.get("src", "?")
        result["ledger"]["ordersBySource"][source] = result["ledger"]["ordersBySource"].get(source, 0) + 1
    result["sold"] = sold
    result["oversold"] = sold > result["stock"] or result["ledger"]["confirmedUnits"] > result["stock"]
    if result["ledger"]["confirmedUnits"] != sold:
        result["warnings"].append("ledger: confirmed units %d != sold %d" % (result["ledger"]["confirmedUnits"], sold))
    return confirmed


def _check_sell_out(result, answers):
    """The sell-out instants, and SOLD_OUT answers received before it."""
    opened, sold_out = result["ledger"]["openedAtMs"], result["ledger"]["soldOutAtMs"]
    result["sellOutMs"] = sold_out - opened if opened and sold_out else None
    result["sellOutFromStartsAtMs"] = sold_out - result["startsAtMs"] if sold_out else None
    # SOLD_OUT is due only once every unit is sold: an answer SOLD_OUT that the client had already received
    # before the ledger's soldOutAtMs (Redis TIME, the same host clock) was decided before the sell-out.
    # One-sided: a premature answer received after soldOutAtMs is not seen.
    sold_out_answers = [int(row[0]) for row in answers if row[1] == "409" and row[2] == "SOLD_OUT"]
    result["soldOutAnsweredBeforeSellOut"] = (sum(1 for t in sold_out_answers if t < sold_out * 1000)
                                              if sold_out else None)
    if result["soldOutAnsweredBeforeSellOut"]:
        result["warnings"].append(
            "%d SOLD_OUT answers were received before the ledger's soldOutAtMs (first %.1f ms before)"
            % (result["soldOutAnsweredBeforeSellOut"], (sold_out * 1000 - min(sold_out_answers)) / 1000.0))
    result["openedAfterStartsAtMs"] = opened - result["startsAtMs"] if opened else None


def _fcfs(result, threads, sends, winners, by_customer):
    """FCFS precision against the send order (the first K customers by send, K = winners), the winners sent
    after rank K (result["lateWinnersDetail"]) and the same question per wrk thread."""
    sent_customers = [s[3] for s in sends]
    k = len(winners)
    rank = {customer: position for position, customer in enumerate(sent_customers)}
    first_k = set(sent_customers[:k])
    winner_ranks = sorted(rank[c] for c in winners if c in rank)
    fcfs = {"K": k, "winnersNotSent": sum(1 for c in winners if c not in rank)}
    # Winners sent after rank K: their rank, the instance whose lease sold to them, and when their order was
    # created after the sale opened in the ledger (at most 50, earliest sent first).
    opened_ms = result["ledger"].get("openedAtMs")
    result["lateWinnersDetail"] = [{"rank": rank[c] + 1, "instance": by_customer[c].get("i"),
                                    "createdAfterOpeningMs": int(by_customer[c]["t"]) - opened_ms if opened_ms else None}
                                   for c in sorted((c for c in winners if c in rank and rank[c] >= k), key=rank.get)
                                   if c in by_customer][:50]
    if k:
        fcfs["precision"] = round(len(first_k & set(winners)) / k, 4)
        fcfs["lateWinners"] = sum(1 for r in winner_ranks if r >= k)
        fcfs["maxWinnerRank"] = winner_ranks[-1] + 1 if winner_ranks else None
        if len(sends) >= k:
            fcfs["firstKSendSpreadMs"] = round((sends[k - 1][0] - sends[0][0]) / 1000.0, 3)
        # the same question per wrk thread alone (its own send order, its own winners), for comparison
        per_thread = []
        for thread in threads:
            order = [s[3] for s in sends if s[1] == thread["tid"]]
            won = {c for c in order if c in winners}
            if won:
                per_thread.append(len(set(order[:len(won)]) & won) / len(won))
        fcfs["perThreadMeanPrecision"] = round(sum(per_thread) / len(per_thread), 4) if per_thread else None
    return fcfs
