"""The self-contained HTML page of the crowd runs (`--html`; `make demo` writes reports/demo-*.html): what
the latency figures mean, then per run the summary, the latency table, units left over time from the
opening instant with the ledger's sell-out, answers by outcome per 25 ms, and the winners' latency by
send time. Inline SVG, no script, no network."""

import html
import os
import re

from .charts import html_table, svg_chart
from .figures import quantiles
from .report import fmt_ms
from .sale import rfc3339_ms


HTML_BUCKET_MS = 25
HTML_OUTCOMES = (("201", "201 order", "#2e7d32"), ("202", "202 waiting list", "#1565c0"),
                 ("409:SOLD_OUT", "409 SOLD_OUT", "#b0bec5"), ("409", "409 other", "#ef6c00"),
                 ("503", "503", "#c62828"), ("other", "other", "#6a1b9a"))
HTML_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-top:1px solid #ccc;padding-top:12px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:12px;word-break:break-all}
svg{max-width:100%;height:auto;font:11px system-ui,sans-serif}.key{display:inline-block;width:11px;height:11px;margin:0 4px 0 12px}
.warn{color:#b00020}"""


def outcome_of(status, code):
    if status == "409":
        return "409:SOLD_OUT" if code == "SOLD_OUT" else "409"
    return status if status in ("201", "202", "503") else "other"


def html_run(r, machine, bucket_ms=HTML_BUCKET_MS):
    """One run's section: summary, latency, units left, answers by outcome, the winners' latency by send time."""
    title = "%s path, %d instance(s), round %d" % (r["path"], r["instances"], r["round"])
    if "error" in r or "_answers" not in r:
        return '<h2>%s</h2><p class="warn">ERROR: %s</p>' % (html.escape(title), html.escape(r.get("error", "no data")))
    t0 = r["startsAtMs"] * 1000  # the opening instant, microseconds since the epoch
    answered = sorted(((int(row[0]) - t0) / 1000.0, outcome_of(row[1], row[2]), row[3]) for row in r["_answers"])
    sent_at = {s[3]: (s[0] - t0) / 1000.0 for s in r["_sends"]}
    won = [(sent_at[int(c[5:])], t - sent_at[int(c[5:])]) for t, key, c in answered
           if key == "201" and re.fullmatch(r"cust-(\d+)", c) and int(c[5:]) in sent_at]
    from_open = quantiles([t for t, _, _ in answered], (0.5, 0.95, 0.99)) or {}
    from_open201 = quantiles([t for t, key, _ in answered if key == "201"], (0.5, 0.95, 0.99)) or {}
    wrk_lat, won_lat = r["latencyMs"], r.get("latency201Ms") or {}
    last_ms = answered[-1][0] if answered else 0.0
    buckets = max(0, int(last_ms // bucket_ms)) + 1
    counts = {key: [0] * buckets for key, _, _ in HTML_OUTCOMES}
    for t, key, _ in answered:
        counts[key][min(buckets - 1, max(0, int(t // bucket_ms)))] += 1
    by_send = {}
    for send_ms, latency in won:
        by_send.setdefault(max(0, int(send_ms // bucket_ms)), []).append(latency)
    fcfs, ledger = r.get("fcfs", {}), r["ledger"]

    summary = [
        ("sale", "%s: %d units, at most %d per customer; opening instant (t 0) %s"
         % (r["saleId"], r["stock"], r["limit"], rfc3339_ms(r["startsAtMs"]))),
        ("customers", "%d (%d sent, %d never sent, %d unanswered when wrk ended)"
         % (r["customers"], r["customersSent"], r["customersUnsent"], r["customersUnanswered"])),
        ("requests", "%d answered by wrk on %d connections, %d threads; socket errors %s"
         % (r["wrk"]["requests"], r["connections"], r["threads"],
            ", ".join("%s %d" % kv for kv in (r.get("socketErrors") or {}).items() if kv[1]) or "none")),
        ("answers by status/code", ", ".join("%s: %d" % (k.replace(":-", "").replace(":", " "), v)
                                             for k, v in r["answers"].items())),
        ("answers per second", "%s over the %s s from the first send to the last answer"
         % (r.get("crowdRequestsPerSecond") or "-", r.get("crowdSeconds") or "-")),
        ("sell-out after opening", "%s ms after t 0 (the ledger's soldOutAtMs); the ledger opened the sale %s ms "
         "after t 0, so %s ms after its openedAt" % (fmt_ms(r["sellOutFromStartsAtMs"]), r["openedAfterStartsAtMs"],
                                                     fmt_ms(r["sellOutMs"]))),
        ("FCFS precision", "%s of the first K = %s customers by send time hold an order (late winners %s, largest "
         "winner rank %s; the first K were sent within %s ms)"
         % ("%.3f" % fcfs["precision"] if "precision" in fcfs else "-", fcfs.get("K"), fcfs.get("lateWinners", "-"),
            fcfs.get("maxWinnerRank", "-"), fmt_ms(fcfs.get("firstKSendSpreadMs")))),
    ] + ([
        ("the front's order", "haproxy read the first K customers in send order to %.3f and handed them to the "
         "instances (read + queue + connect) in send order to %.3f: that is the FCFS precision an engine serving "
         "exactly in hand-over order would reach. Against the hand-over order the engine's FCFS precision is %.3f. "
         "Send to hand-over of the first K: p50 %s ms, p95 %s ms. From haproxy's read (X-Request-Start) to the "
         "engine, every order: p50 %s ms, p95 %s ms"
         % (r["front"]["readOrderCeiling"], r["front"]["ceiling"], r["front"]["precisionByHandOver"],
            fmt_ms(r["front"]["firstKSendToHandOverMs"]["p50"]), fmt_ms(r["front"]["firstKSendToHandOverMs"]["p95"]),
            (r["front"].get("lagToEngineMs") or {}).get("p50", "-"), (r["front"].get("lagToEngineMs") or {}).get("p95", "-"))),
    ] if "ceiling" in r.get("front", {}) else []) + [
        ("oversell check", "sold %d of %d: %s; confirmed units in the ledger %d; 201s without a ledger order %d; "
         "SOLD_OUT received before the sell-out %s"
         % (r["sold"], r["stock"], "OVERSOLD" if r["oversold"] else "no oversell", ledger["confirmedUnits"],
            r["ackedButMissing"], r["soldOutAnsweredBeforeSellOut"])),
        ("wrk command", r["wrkCommand"]),
        ("CPU seconds during wrk's run", ", ".join("%s %.2f s" % kv for kv in sorted(r["cpuSeconds"].items()))),
        ("machine", "%s CPUs (%s), %s; load average at start %s"
         % (machine.get("cpus"), machine.get("cpuModel") or "?", machine.get("platform") or "?",
            " ".join("%.2f" % v for v in machine.get("loadavg", [])))),
    ]
    latency = [
        ("all answers, from wrk's write (wrk's histogram)",) + tuple(
            fmt_ms(wrk_lat.get(k)) for k in ("p50", "p95", "p99", "max")) + (r["wrk"]["requests"],),
        ("201s, from wrk's write (each winner's own)",) + tuple(
            fmt_ms(won_lat.get(k)) for k in ("p50", "p95", "p99", "max")) + (won_lat.get("n", 0),),
        ("all answers, from t 0 (includes the wait for a free connection)",) + tuple(
            fmt_ms(from_open.get(k)) for k in ("p50", "p95", "p99", "max")) + (from_open.get("n", 0),),
        ("201s, from t 0",) + tuple(fmt_ms(from_open201.get(k)) for k in ("p50", "p95", "p99", "max"))
        + (from_open201.get("n", 0),),
    ]

    times201 = [t for t, key, _ in answered if key == "201"][:r["stock"]]
    marks_ms = [(v, label, colour) for v, label, colour in (
        (r["openedAfterStartsAtMs"], "opened (ledger)", "#888"),
        (r["sellOutFromStartsAtMs"], "sell-out (ledger)", "#c62828")) if v is not None]
    stock_x = max([1.0] + times201[-1:] + [v for v, _, _ in marks_ms]) * 1.08

    def stock_marks(sx, sy):
        path = "M%.1f %.1f" % (sx(0), sy(r["stock"])) + "".join(
            "H%.1fV%.1f" % (sx(t), sy(r["stock"] - i - 1)) for i, t in enumerate(times201))
        out = ['<path d="%s" fill="none" stroke="#2e7d32" stroke-width="2"/>' % path]
        for v, label, colour in marks_ms:
            out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="5 3"/>'
                       '<text x="%.1f" y="%.1f" fill="%s" text-anchor="%s">%s %s ms</text>'
                       % (sx(v), sy(0), sx(v), sy(r["stock"]), colour, sx(v) + (-4 if v > stock_x / 2 else 4),
                          sy(r["stock"] * (0.9 if v > stock_x / 2 else 0.1)), colour,
                          "end" if v > stock_x / 2 else "start", html.escape(label), fmt_ms(v)))
        return "".join(out)

    def answer_marks(sx, sy):
        out = []
        for b in range(buckets):
            base = 0
            for key, label, colour in HTML_OUTCOMES:
                n = counts[key][b]
                if n:
                    out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%d-%d ms: %d %s'
                               '</title></rect>' % (sx(b * bucket_ms), sy(base + n), sx(bucket_ms) - sx(0) - 1,
                                                    sy(base) - sy(base + n), colour, b * bucket_ms,
                                                    (b + 1) * bucket_ms, n, html.escape(label)))
                    base += n
        return "".join(out)

    def latency_marks(sx, sy):
        out = ['<circle cx="%.1f" cy="%.1f" r="1.5" fill="#888" fill-opacity="0.4"/>' % (sx(x), sy(y)) for x, y in won]
        for q, colour in ((0.5, "#1565c0"), (0.99, "#c62828")):
            points = [(sx((b + 0.5) * bucket_ms), sy(quantiles(v, (q,))["p%g" % (q * 100)]), b, len(v))
                      for b, v in sorted(by_send.items())]
            out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>'
                       % (" ".join("%.1f,%.1f" % p[:2] for p in points), colour))
            out.extend('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>sent %d-%d ms: %d winners</title></circle>'
                       % (x, y, colour, b * bucket_ms, (b + 1) * bucket_ms, n) for x, y, b, n in points)
        return "".join(out)

    def legend(colour, label):
        return '<span class="key" style="background:%s"></span>%s' % (colour, html.escape(label))
    answers_y = max([1] + [sum(counts[k][b] for k, _, _ in HTML_OUTCOMES) for b in range(buckets)]) * 1.05
    return "".join([
        "<h2>%s</h2>" % html.escape(title),
        "".join('<p class="warn">WARNING: %s</p>' % html.escape(w) for w in r.get("warnings", [])),
        "<h3>Summary</h3>", html_table(summary),
        "<h3>Latency, ms</h3>", html_table(latency, ("", "p50", "p95", "p99", "max", "answers")),
        "<h3>Units left, as customers saw them</h3><p>Stock minus the 201 answers received so far (by answer time), "
        "until it reaches 0. The dashed lines are the ledger's own instants (Redis time): when the sale opened and "
        "when its last unit was sold.%s</p>" % (" Only %d units were answered 201; the rest went to customers "
                                                 "served from the waiting list (202)." % len(times201)
                                                 if len(times201) < r["stock"] else ""),
        svg_chart(stock_x, r["stock"], "ms after the opening instant", "units left", stock_marks),
        "<h3>Answers over time, by outcome</h3><p>Answers received in each %d ms from t 0, stacked by outcome."
        "</p><p>%s</p>" % (bucket_ms, "".join(legend(c, label) for _, label, c in HTML_OUTCOMES)),
        svg_chart(buckets * bucket_ms, answers_y, "ms after the opening instant", "answers per %d ms" % bucket_ms,
                  answer_marks),
        "<h3>Latency by send time (the 201s)</h3><p>Each winner's latency (wrk's write to its 201) against the time "
        "wrk wrote its request, and per %d ms of send time from t 0 the p50 and p99. Only a 201 names its customer, "
        "so only the 201s can be tied to their send; for the other answers see wrk's overall figures above.</p>"
        "<p>%s%s%s</p>" % (bucket_ms, legend("#888", "one winner"), legend("#1565c0", "p50"), legend("#c62828", "p99")),
        svg_chart((max(by_send, default=0) + 1) * bucket_ms, max([1.0] + [v for _, v in won]) * 1.05,
                  "send time, ms after the opening instant", "latency, ms", latency_marks),
    ])


def write_html(path, report):
    """One self-contained page (inline SVG, no script, no network) for the crowd runs of this invocation."""
    machine, first = report["machine"], (report["runs"] or [{}])[0]
    page = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Flash crowd %s</title><style>%s"
            "</style></head><body>" % (html.escape(report["startedAt"]), HTML_STYLE),
            "<h1>Flash crowd with wrk, %s</h1><p><code>%s</code><br>binary <code>%s</code></p>"
            % (html.escape(report["startedAt"]), html.escape(report["command"]), html.escape(report["bin"])),
            "<h3>What the figures mean</h3>"
            "<p>Time runs from the opening instant: <b>t 0 is the sale's startsAt</b>, and every time is in "
            "milliseconds after it. All %(customers)s customers arrive at t 0, each ordering one unit once, over "
            "%(connections)s keep-alive connections: wrk writes the first %(connections)s customers' requests at t 0 "
            "and each later customer's request as soon as a connection has its previous answer.</p>"
            "<p><b>Latency</b> is the time from the moment wrk wrote the customer's request (not the intended send "
            "time, t 0) to the moment wrk received the answer. It includes queueing behind the earlier customers "
            "still in the server: wrk, the server and redis-server share the same %(cpus)s-core machine and its CPU. It "
            "does not include the time a customer waited for a free connection before wrk wrote the request; the "
            "rows \"from t 0\" do (an answer's time after the opening instant). p50, p95 and p99: half, 95 %% and "
            "99 %% of the answers came at least this fast. \"All answers\" is every request (201s and fast 409s "
            "alike, wrk's own histogram); \"201s\" are the winners only, each from its own send.</p>"
            % {"customers": first.get("customers"), "connections": first.get("connections"), "cpus": machine.get("cpus")}]
    page.extend(html_run(r, machine) for r in report["runs"])
    page.append("</body></html>\n")
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(page))
