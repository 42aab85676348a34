"""What a run prints and keeps: the text tables (crowd runs, open-loop rows), the lines logged per run,
the machine, and the JSON report (keys starting with "_" left out)."""

import json
import os
import platform
import sys


def fmt_ms(value):
    return "-" if value is None else ("%.0f" % value if value >= 10 else "%.1f" % value)


def print_table(results, out=sys.stdout):
    header = ("path", "inst", "sold", "sellout ms", "201", "202", "409", "503", "other", "p50 ms", "p90 ms",
              "p99 ms", "req/s", "FCFS", "late win", "1stK ms", "front ceil", "FCFS/hand-over")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["path"], str(r["instances"]), "ERROR: " + r["error"][:80]) + ("",) * (len(header) - 3))
            continue
        fcfs = r.get("fcfs", {})
        rows.append((r["path"], str(r["instances"]), ("%d" % r["sold"]) + (" OVERSOLD" if r["oversold"] else ""),
                     fmt_ms(r["sellOutMs"]), str(r["count201"]), str(r["count202"]), str(r["count409"]),
                     str(r["count503"]), str(r["countOther"]), fmt_ms(r["latencyMs"]["p50"]),
                     fmt_ms(r["latencyMs"]["p90"]), fmt_ms(r["latencyMs"]["p99"]),
                     "%.0f" % r["crowdRequestsPerSecond"] if r.get("crowdRequestsPerSecond") else "-",
                     "%.3f" % fcfs["precision"] if "precision" in fcfs else "-", str(fcfs.get("lateWinners", "-")),
                     fmt_ms(fcfs.get("firstKSendSpreadMs")),
                     "%.3f" % r["front"]["ceiling"] if "ceiling" in r.get("front", {}) else "-",
                     "%.3f" % r["front"]["precisionByHandOver"] if "precisionByHandOver" in r.get("front", {}) else "-"))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(cell).rjust(widths[i]) for i, cell in enumerate(row)).rstrip(), file=out)


def log_crowd_result(result, log):
    """The lines printed after each crowd run: warnings and failed checks first, then the figures."""
    for warning in result.get("warnings", []):
        log("  WARNING: " + warning)
    if result.get("oversold"):
        log("  OVERSOLD: sold %d of %d" % (result["sold"], result["stock"]))
    if result.get("ackedButMissing"):
        log("  ACKED-BUT-MISSING: %d customers got 201 but hold no confirmed order" % result["ackedButMissing"])
    if "error" in result:
        log("  ERROR: " + result["error"])
        return
    log("  answers: %s" % json.dumps(result["answers"]))
    log("  ledger: %s; sell-out %s ms after openedAt (%s ms after startsAt, opened %s ms after startsAt); "
        "first send %s ms after startsAt; cpu s %s; wrk Requests/sec (whole -d) %s"
        % (json.dumps({k: result["ledger"][k] for k in ("status", "closedReason", "sold", "confirmedOrders", "ordersBySource")}),
           result["sellOutMs"], result["sellOutFromStartsAtMs"], result["openedAfterStartsAtMs"],
           result["firstSendAfterStartsAtMs"], json.dumps(result["cpuSeconds"]),
           result.get("wrkRequestsPerSecond")))
    log("  fcfs: %s; 201 latency ms %s" % (json.dumps(result["fcfs"]), json.dumps(result.get("latency201Ms"))))
    if "front" in result:
        log("  front: %s" % json.dumps(result["front"]))


def print_open_table(results, out=sys.stdout):
    # latency columns: from each 201's intended send time (the schedule's due time), as the targets
    header = ("inst", "conn", "rate/s", "s", "sent/s", "ans/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms",
              "201", "202", "409", "429", "503", "other", "sock err", "late", "sold", "201 = sold", "oversold",
              "ceiling req/s")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((str(r["instances"]), str(r["connections"]), "ERROR: " + r["error"][:100]) + ("",) * (len(header) - 3))
            continue
        lat = r.get("latency201FromDueMs") or {k: None for k in ("p50", "p90", "p95", "p99", "max")}
        ceiling = r.get("ceiling", {}).get("wrkRequestsPerSecond")
        rows.append((str(r["instances"]), str(r["connections"]), "%g" % r["rate"], "%g" % r["durationSeconds"],
                     "%.0f" % r["sentPerSecond"], "%.0f" % r["answersPerSecond"] if r.get("answersPerSecond") else "-",
                     fmt_ms(lat["p50"]), fmt_ms(lat["p90"]), fmt_ms(lat["p95"]), fmt_ms(lat["p99"]), fmt_ms(lat["max"]),
                     str(r["count201"]), str(r["count202"]), str(r["count409"]), str(r["count429"]),
                     str(r["count503"]), str(r["countOther"]), str(r["socketErrorsTotal"]), str(r["late"]),
                     str(r["sold"]), "yes" if r["soldEquals201"] else "NO",
                     ("yes" if r["oversold"] else "no") + (" (%d acked missing)" % r["ackedButMissing"] if r["ackedButMissing"] else ""),
                     "%.0f" % ceiling if ceiling else "-"))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    print("| " + " | ".join(str(c).rjust(widths[i]) for i, c in enumerate(header)) + " |", file=out)
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|", file=out)
    for row in rows:
        print("| " + " | ".join(str(c).rjust(widths[i]) for i, c in enumerate(row)) + " |", file=out)


def log_open_result(result, log):
    for warning in result.get("warnings", []):
        log("  WARNING: " + warning)
    if "error" in result:
        log("  ERROR: " + result["error"])
        return
    if result.get("oversold"):
        log("  OVERSOLD: sold %d of %d" % (result["sold"], result["stock"]))
    if result.get("ackedButMissing"):
        log("  ACKED-BUT-MISSING: %d customers got 201 but hold no confirmed order" % result["ackedButMissing"])
    log("  " + "\n  ".join(result["wrkText"]))
    log("  answers: %s; socket errors %s; unanswered at wrk's end %d"
        % (json.dumps(result["answers"]), json.dumps(result["socketErrors"]), result["unanswered"]))
    log("  schedule: %d slots, %d sent, connections ready before the origin %d/%d, late sends %d (mean %.1f ms, "
        "max %.1f ms), 201 answers slower than the %.0f ms interval %s; send lag ms %s"
        % (result["slots"], result["issued"], result["held"], result["connections"], result["late"],
           result["lateMeanMs"], result["lateMaxMs"], result["intervalMs"], result["overIntervalAnswers201"],
           json.dumps(result["sendLagMs"])))
    log("  rate: sent/s in the %g s window %.1f, answers/s %s, answers each second %s"
        % (result["durationSeconds"], result["sentPerSecond"], result["answersPerSecond"], result["answersEachSecond"]))
    log("  latency ms (wrk, send -> answer) %s" % json.dumps(result["latencyMs"]))
    log("  latency ms of the 201s: from the send %s; from the due time %s"
        % (json.dumps(result["latency201Ms"]), json.dumps(result["latency201FromDueMs"])))
    log("  ledger: %s; sold == 201s: %s; oversold: %s; acked but missing: %d"
        % (json.dumps(result["ledger"]), result["soldEquals201"], result["oversold"], result["ackedButMissing"]))
    log("  targets: %s" % json.dumps(result["targets"]))
    log("  cpu s %s; max open fds %s (hard limit %d)" % (json.dumps(result["cpuSeconds"]), json.dumps(result["fdMax"]),
                                                           result["fdHardLimit"]))
    for name, entry in result.get("logs", {}).items():
        if entry["lines"]:
            log("  %s.log: %d lines, last: %s" % (name, entry["lines"], " | ".join(entry["tail"])[:600]))
    if "ceiling" in result:
        ceiling = result["ceiling"]
        log("  wrk ceiling, same setting (GET /healthz, closed loop, -t%d -c%d, 5 s, after %s s of quiet wait): "
            "%s req/s, latency ms %s, socket errors %s"
            % (result["threads"], result["connections"], result.get("ceilingQuietAfterSeconds"),
               ceiling.get("wrkRequestsPerSecond"), json.dumps(ceiling.get("latencyMs")),
               json.dumps(ceiling.get("socketErrors") or "none")))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return None


def machine():
    return {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "cpuModel": cpu_model(), "platform": platform.platform()}


def write_json(report_dir, name, report):
    """The report as JSON in report_dir/name, without the per-request rows kept for --html; returns its path."""
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, name)
    with open(path, "w") as handle:
        json.dump(dict(report, runs=[{k: v for k, v in r.items() if not k.startswith("_")} for r in report["runs"]]),
                  handle, indent=2, sort_keys=True)
    return path
