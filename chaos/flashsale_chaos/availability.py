"""Availability during a fault, read from the workload's history (the liveness sweep is not part of it).

The fault window runs from the fault's injection until it is over: the heal is done and every instance
answers /readyz again (for a fault without a heal step, such as a rolling upgrade, until the inject step
returns and the instances are ready). In it:

  - first attempts: the share of intents first sent in the window whose first attempt was answered
    definitively (201 confirmed, 202 waitlisted, 409 a final refusal such as sold out or over the limit);
    what a client that never retries sees, as behind an L4 balancer that never re-sends;
  - intents: the share of those same intents answered definitively by some attempt when the customer retries
    as the sale page does (the same Idempotency-Key, Retry-After, doubling backoff, 6 attempts);
  - the time to recover stays the table's `recover s` (see `checker.recovery`).

A share is None when no intent started in the window."""

DEFINITIVE = (201, 202, 409)


def fault_window(fault):
    """(start, end) as wall-clock seconds, or None when the fault never ran."""
    start = fault.get("injectedWall")
    if start is None:
        return None
    end = fault.get("overWall") or fault.get("healStartedWall") or start
    return start, max(start, end)


def availability(history, fault):
    window = fault_window(fault)
    if window is None:
        return {"windowSeconds": None, "intents": 0, "firstAttempts": None, "intentsAnswered": None}
    start, end = window
    attempts = {}
    for attempt in sorted(history.attempts, key=lambda a: a["sent"]):
        attempts.setdefault(attempt["key"], []).append(attempt)
    in_window = [tries for tries in attempts.values() if start <= tries[0]["sent"] <= end]
    first = sum(1 for tries in in_window if tries[0]["status"] in DEFINITIVE)
    answered = sum(1 for tries in in_window if any(a["status"] in DEFINITIVE for a in tries))
    not_first = [str(tries[0]["status"]) for tries in in_window if tries[0]["status"] not in DEFINITIVE]
    return {
        "windowSeconds": round(end - start, 2),
        "intents": len(in_window),
        "firstAttempts": share(first, len(in_window)),
        "intentsAnswered": share(answered, len(in_window)),
        "firstAttemptsNotAnswered": len(not_first),
        "firstAttemptFailures": {status: not_first.count(status) for status in sorted(set(not_first))},
        "intentsNotAnswered": len(in_window) - answered,
    }


def share(part, whole):
    return round(part / whole, 6) if whole else None


def percent(value):
    """A share as the table prints it: 100% only when nothing failed (99.996% is not rounded up)."""
    if value is None:
        return "-"
    if value == 1:
        return "100%"
    return "%.3f%%" % (int(value * 100_000) / 1000)
