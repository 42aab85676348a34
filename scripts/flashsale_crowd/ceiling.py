"""wrk's own ceiling: closed loop on GET /healthz of a topology's front for 5 s (`--ceiling` on one instance
of its own; after the open loop in the same topology, once the service went quiet)."""

import json
import re
import shutil
import subprocess
import tempfile
import time

from .topology import Topology
from .workload import cpu_snapshot, cpu_used, parse_wrk_text


def run_ceiling(args, procs, log):
    workdir = tempfile.mkdtemp(prefix="crowd-ceiling-")
    topology = None
    try:
        topology = Topology(procs, args.bin, workdir, 1, "engine")
        return measure_ceiling(topology, args.threads, args.connections, log)
    finally:
        if topology:
            topology.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def measure_ceiling(topology, threads, connections, log):
    """wrk closed loop on GET /healthz of the topology's front (instance or haproxy) for 5 s."""
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d5s", "--latency",
            "http://127.0.0.1:%d/healthz" % topology.port]
    log("ceiling: " + " ".join(argv))
    before = cpu_snapshot(topology)
    output = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60).stdout.decode()
    result = {"mode": "ceiling", "wrkCommand": " ".join(argv), "wrkText": output.splitlines()}
    result["cpuSeconds"] = cpu_used(topology, before)
    result.update(parse_wrk_text(output))
    print("ceiling: cpu seconds during the 5 s: %s" % json.dumps(result["cpuSeconds"]))
    for line in output.splitlines():
        match = re.match(r"\s+(50|90|99)%\s+([\d.]+)(us|ms|s)", line)
        if match:
            value = float(match.group(2)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(3)]
            result.setdefault("latencyMs", {})["p" + match.group(1)] = round(value, 2)
    return result


def wait_quiet(topology, timeout, busy_cpu=0.1):
    """Seconds until the topology used less than busy_cpu CPU seconds in one second; None after timeout."""
    started = time.monotonic()
    before = topology.cpu()
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        after = topology.cpu()
        used = sum(after[n] - before[n] for n in before if before[n] is not None and after.get(n) is not None)
        if used < busy_cpu:
            return round(time.monotonic() - started, 1)
        before = after
    return None
