"""What a run leaves behind: the table on stdout (with the fault evidence, the liveness verdicts and the
reasons of failures under it), `chaos.json`, every scenario's history (`<scenario>.history.jsonl`) and, when
a scenario failed or `--keep-logs` is given, the processes' logs."""

import json
import os
import shutil
import statistics

from .availability import percent


def keep_files(results, workdir, report_dir, keep_logs):
    """Copies the histories (always) and the logs (on failure or on request) from `workdir` to `report_dir`."""
    for result in results:  # every scenario's history is kept: request, send time, reply, order id
        name = result["scenario"] if result.get("round", 1) == 1 else "%s.%d" % (result["scenario"], result["round"])
        history = os.path.join(workdir, name, "history.jsonl")
        if os.path.exists(history):
            shutil.copy(history, os.path.join(report_dir, name + ".history.jsonl"))
    if keep_logs or any(not r.get("passed") and not r.get("control") for r in results):
        logs = os.path.join(report_dir, "logs")
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(workdir, logs, ignore=shutil.ignore_patterns("*.aof", "*.rdb", "appendonlydir", "*.sock", "*.key",
                                                                     "haproxy.pem"))


def write_json(results, report_dir):
    with open(os.path.join(report_dir, "chaos.json"), "w") as handle:
        json.dump(results, handle, indent=2)


def print_rows(header, rows):
    """A text table: the header, a rule, one line per row, columns as wide as their widest cell."""
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def live_cell(r):
    if "live" not in r:
        return "-"
    if r["live"]:
        return "yes"
    return "no (control)" if r["control"] else "NO"


def print_table(results, tls=False):
    header = ("scenario", "requests", "confirmed", "unknown", "lost acked", "oversold", "outage s", "recover s",
              "available: first / intents", "fault", "live", "result")
    rows = []
    for r in results:
        if "error" in r:
            rows.append((r["scenario"], "-", "-", "-", "-", "-", "-", "-", "-", "-", live_cell(r), "ERROR"))
            continue
        verdict = "PASS" if r["passed"] else "FAIL"
        if r["control"]:
            verdict = "lost orders (expected)" if (r["lost"] or r["oversold"]) else "no loss this run"
        rows.append((r["scenario"], r["requests"], r["confirmed"], "%d (%d ordered)" % (r["unknown"], r["unknownResolvedOrdered"]),
                     r["lost"], r["oversold"], r["outageSeconds"] if r["outageSeconds"] is not None else "-",
                     r["recoverySeconds"] if r["recoverySeconds"] is not None else "-", availability_cell(r),
                     "took effect" if r.get("effect") else "NO EFFECT", live_cell(r), verdict))
    print_rows(header, rows)
    if tls:
        counted = ", ".join("%s %d" % (r["scenario"], r["tls"]["haproxyTLSConnections"]) for r in results if "tls" in r)
        print("TLS: every hop over HTTPS (clients to haproxy, haproxy to the instances, health checks, probes), "
              "verified against a throwaway CA; plain HTTP refused; haproxy's TLS connections: %s" % (counted or "-"))
    print("available: among the intents first sent while the fault lasted, the share whose first attempt was answered "
          "201/202/409, and the share answered so when retried as the sale page does; a target, when the scenario has "
          "one, in brackets")
    for r in results:
        if "evidence" in r:
            print("%s: %s" % (r["scenario"], r["evidence"]))
    for r in results:
        if "liveness" in r:
            print("%s: %s%s" % (r["scenario"], "(control, reported) " if r["control"] and not r["live"] else "",
                                r["liveness"]["reason"]))
            print_lease_table(r["liveness"])
    for r in results:
        if "error" in r:
            print("%s: %s" % (r["scenario"], r["error"]))
        elif not r["passed"] and not r["control"]:
            details = {k: r[k] for k in ("lost", "lostOrders", "oversold", "overLimit", "doubleKeys", "invariant",
                                         "ledgerUnitsMatchSold", "missingInMongo", "alive", "effect", "maxRSSMiB", "live", "tls",
                                         "availabilityMet", "availability") if k in r}
            print("%s failed: %s" % (r["scenario"], json.dumps(details)))


def availability_cell(r):
    """`99.950% / 100% (>= 99.99% / 100%)` over the intents first sent in the fault window."""
    a = r.get("availability") or {}
    if not a.get("intents"):
        return "-"
    cell = "%s / %s of %d" % (percent(a["firstAttempts"]), percent(a["intentsAnswered"]), a["intents"])
    targets = r.get("availabilityTargets") or {}
    if targets:
        cell += " (>= %s / %s)" % (percent(targets.get("firstAttempts")), percent(targets.get("intentsAnswered")))
    return cell


def print_lease_table(liveness):
    """The ledger's leases when a sale did not sell out in time (nothing when it did)."""
    if liveness["live"] or "ledger" not in liveness:
        return
    ledger = liveness["ledger"]
    print("    ledger at the deadline: status=%s%s pool=%d sold=%d waitlist=%d (%d units) leases=%d" % (
        ledger["status"], " (%s)" % ledger["reason"] if ledger["reason"] else "", ledger["pool"], ledger["sold"],
        ledger["waiting"], ledger["waitingUnits"], len(liveness["leaseTable"])))
    if not liveness["leaseTable"]:
        return
    header = ("shard", "owner", "fence", "remaining", "expires in s")
    rows = [(lease["shard"], lease["owner"], lease["fence"], lease["remaining"], "%+.2f" % lease["expiresInSeconds"])
            for lease in liveness["leaseTable"]]
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def spread(values, format_value=str):
    """`min / median / max` of the values that exist ("-" when none)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    return " / ".join(format_value(v) for v in (values[0], statistics.median_low(values), values[-1]))


def print_soak_table(results, rounds, report_dir):
    """Per scenario over the rounds: passes, the worst losses, and min / median / max of each timing and share."""
    header = ("scenario", "passed", "lost acked (max)", "oversold (max)", "outage s", "recover s",
              "first attempts available", "intents available")
    rows, summary = [], []
    for name in dict.fromkeys(r["scenario"] for r in results):
        runs = [r for r in results if r["scenario"] == name]
        figures = {
            "scenario": name, "rounds": len(runs), "passed": sum(1 for r in runs if r.get("passed")),
            "control": runs[0]["control"], "errors": [r["error"] for r in runs if "error" in r],
            "lostMax": max((r.get("lost", 0) for r in runs), default=0),
            "oversoldMax": max((r.get("oversold", 0) for r in runs), default=0),
            "outageSeconds": [r.get("outageSeconds") for r in runs],
            "recoverySeconds": [r.get("recoverySeconds") for r in runs],
            "firstAttempts": [(r.get("availability") or {}).get("firstAttempts") for r in runs],
            "intentsAnswered": [(r.get("availability") or {}).get("intentsAnswered") for r in runs],
        }
        summary.append(figures)
        rows.append((name + (" (control)" if figures["control"] else ""), "%d of %d" % (figures["passed"], len(runs)),
                     figures["lostMax"], figures["oversoldMax"], spread(figures["outageSeconds"]),
                     spread(figures["recoverySeconds"]), spread(figures["firstAttempts"], percent),
                     spread(figures["intentsAnswered"], percent)))
    with open(os.path.join(report_dir, "soak.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    print("soak: %d rounds; timings and shares as min / median / max over the rounds" % rounds)
    print_rows(header, rows)
