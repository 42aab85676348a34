"""What wrk runs and what it leaves: the Lua scripts (templates `crowd.lua` and `open.lua` beside this file,
filled per run and written into the run's temp dir), the open loop's schedule of sends, wrk as a child with
its output in `wrk.out`, the figures of that output, and the CPU seconds wrk and the topology used."""

import json
import os
import re
import resource

from . import BODY
from .tokens import sign_customers

TEMPLATES = os.path.dirname(os.path.abspath(__file__))


def _template(name):
    with open(os.path.join(TEMPLATES, name)) as handle:
        return handle.read()


def write_lua(path, open_us, tokens_file, out_dir, threads, customers, sale_id, warm_end_us=0, warm_per_thread=0):
    """The closed-loop crowd's script: each thread's customers, held until the opening instant `open_us`."""
    text = (_template("crowd.lua").replace("@OPEN_US@", str(open_us)).replace("@TOKENS@", tokens_file)
            .replace("@OUT@", out_dir).replace("@THREADS@", str(threads)).replace("@CUSTOMERS@", str(customers))
            .replace("@WARM_END_US@", str(warm_end_us)).replace("@WARM_PER_THREAD@", str(warm_per_thread))
            .replace("@PATH@", "/sales/%s/orders" % sale_id).replace("@BODY@", BODY))
    with open(path, "w") as handle:
        handle.write(text)


def write_open_lua(path, origin_us, schedule_prefix, out_dir, sale_id, warm_end_us, warm_per_thread):
    """The open loop's script: each thread's slots from `schedule_prefix<tid>.txt`, due after `origin_us`."""
    with open(path, "w") as handle:
        handle.write(_template("open.lua").replace("@ORIGIN_US@", str(origin_us)).replace("@SCHEDULE@", schedule_prefix)
                     .replace("@OUT@", out_dir).replace("@PATH@", "/sales/%s/orders" % sale_id)
                     .replace("@BODY@", BODY)
                     .replace("@WARM_END_US@", str(warm_end_us))
                     .replace("@WARM_PER_THREAD@", str(warm_per_thread)))


def open_schedule(connections, interval_us, duration_us, rng):
    """One thread's send times (us after the origin): each connection at its random phase + k * interval,
    merged in time order; slot j is phase[j % n] + (j // n) * interval, increasing since the phases are
    sorted and below the interval."""
    phases = sorted(rng.randrange(interval_us) for _ in range(connections))
    out = []
    j = 0
    while True:
        due = phases[j % connections] + (j // connections) * interval_us
        if due >= duration_us:
            return out
        out.append(due)
        j += 1


def write_schedules(schedule_prefix, threads, per_thread, interval_us, duration_us, rng):
    """The schedule and the customers: one customer per slot, a contiguous range per wrk thread, written as
    `customer due token` lines to `schedule_prefix<tid>.txt`. Returns {customer: due us after the origin}."""
    first = 0
    dues_by_customer = {}
    for tid in range(threads):
        dues = open_schedule(per_thread, interval_us, duration_us, rng)
        tokens = sign_customers(first, len(dues))
        with open("%s%d.txt" % (schedule_prefix, tid), "w") as handle:
            handle.write("".join("%d %d %s\n" % (first + i, due, tok) for i, (due, tok) in enumerate(zip(dues, tokens))))
        for i, due in enumerate(dues):
            dues_by_customer[first + i] = due
        first += len(dues)
    return dues_by_customer


def wrk_argv(threads, connections, seconds, script, port):
    return ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds, "--timeout", "30s",
            "--latency", "-s", script, "http://127.0.0.1:%d" % port]


def start_wrk(procs, argv, workdir):
    """wrk as a child of `procs`, its output (and the scripts' CROWD_JSON line) in workdir/wrk.out."""
    return procs.start("wrk", argv, workdir, log_name="wrk.out")


def parse_wrk_text(stdout):
    out = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", stdout)
    if match:
        out["wrkRequestsPerSecond"] = float(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout)
    if match:
        out["socketErrors"] = dict(zip(["connect", "read", "write", "timeout"], map(int, match.groups())))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    if match:
        out["non2xx3xx"] = int(match.group(1))
    return out


def read_wrk_output(result, workdir, returncode):
    """wrk's text (into result: wrkText and parse_wrk_text's figures) and the script's summary, returned and
    kept as result["wrk"]."""
    with open(os.path.join(workdir, "wrk.out"), encoding="utf-8", errors="replace") as handle:
        stdout = handle.read()
    result["wrkText"] = [line for line in stdout.splitlines() if not line.startswith("CROWD_JSON ")]
    result.update(parse_wrk_text(stdout))
    summary_line = next((line for line in stdout.splitlines() if line.startswith("CROWD_JSON ")), None)
    if summary_line is None:
        raise RuntimeError("wrk printed no CROWD_JSON line (exit %s):\n%s" % (returncode, stdout[-2000:]))
    result["wrk"] = json.loads(summary_line[len("CROWD_JSON "):])
    return result["wrk"]


def cpu_snapshot(topology):
    """The topology's CPU seconds and this process's reaped children's (wrk, once it is waited for)."""
    return topology.cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)


def cpu_used(topology, before):
    """CPU seconds used since `before` (a cpu_snapshot): per process of the topology, and wrk's."""
    cpu_before, usage_before = before
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = topology.cpu()
    used = {name: round(cpu_after[name] - cpu_before[name], 2)
            for name in cpu_before if cpu_before[name] is not None and cpu_after.get(name) is not None}
    used["wrk"] = round((usage_after.ru_utime + usage_after.ru_stime)
                        - (usage_before.ru_utime + usage_before.ru_stime), 2)
    return used
