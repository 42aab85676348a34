"""Small figures every analysis uses: quantiles of a list, the answers by status and code that wrk's
threads counted, and the rows (sends, answers) that the Lua scripts wrote per thread."""


def quantiles(values, keys=(0.5, 0.9, 0.95, 0.99)):
    if not values:
        return None
    values = sorted(values)
    out = {"p%g" % (q * 100): round(values[min(len(values) - 1, int(q * len(values)))], 2) for q in keys}
    out["max"], out["n"] = round(values[-1], 2), len(values)
    return out


def answers_by_status(threads):
    """{"status:code": answers} summed over wrk's threads (code "-" below 400)."""
    by_status = {}
    for thread in threads:
        for key, count in thread["counts"].items():
            by_status[key] = by_status.get(key, 0) + count
    return by_status


def total(by_status, status):
    """Answers of one status, every code."""
    return sum(v for k, v in by_status.items() if k.split(":")[0] == status)


def read_lines(path):
    try:
        with open(path) as handle:
            return [line.split() for line in handle if line.strip()]
    except OSError:
        return []
