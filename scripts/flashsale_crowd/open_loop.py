"""The open-loop row (`--open-loop`): N connections sending R orders/s together for D seconds on a schedule
(workload.write_schedules), against a sale already open whose stock exceeds R*D; the open fds sampled while
wrk runs; the sale closed and its ledger checked (open_measures.analyse_open); wrk's ceiling in the same
topology afterwards unless --no-ceiling."""

import base64
import os
import random
import resource
import shutil
import tempfile
import time

from flashsale_chaos.clients import request, wait_until

from . import sale
from .ceiling import measure_ceiling, wait_quiet
from .open_measures import analyse_open
from .processes import fd_count
from .tokens import token
from .topology import Topology
from .workload import (cpu_snapshot, cpu_used, read_wrk_output, start_wrk, write_open_lua, write_schedules,
                       wrk_argv)


def run_open_loop(args, procs, log):
    order_path = args.order_path
    workdir = tempfile.mkdtemp(prefix="crowd-open-")
    interval_us = int(round(args.connections * 1e6 / args.rate))
    duration_us = int(round(args.duration * 1e6))
    result = {"mode": "open-loop", "path": order_path, "instances": args.instances, "connections": args.connections,
              "threads": args.threads, "rate": args.rate, "durationSeconds": args.duration,
              "intervalMs": interval_us / 1000.0, "limit": args.limit, "holdSeconds": args.hold_seconds, "warm": args.warm,
              "seed": args.seed, "warnings": []}
    warn = result["warnings"]
    topology = None
    ok = False
    try:
        log("open loop: %s, %d instance(s), %d connections, %g orders/s for %g s, each connection every %.3f s "
            "(workdir %s)" % (order_path, args.instances, args.connections, args.rate, args.duration,
                              interval_us / 1e6, workdir))
        topology = Topology(procs, args.bin, workdir, args.instances, order_path,
                            haproxy_maxconn=max(9000, args.connections + 100))
        if topology.haproxy_warnings:
            result["haproxyStartWarnings"] = topology.haproxy_warnings
            warn.extend("haproxy: " + line for line in topology.haproxy_warnings)

        # The schedule and the customers: one customer per slot, a contiguous range per wrk thread.
        started = time.monotonic()
        schedule_prefix = os.path.join(workdir, "schedule-")
        dues_by_customer = write_schedules(schedule_prefix, args.threads, args.connections // args.threads,
                                           interval_us, duration_us, random.Random(args.seed))
        customers = len(dues_by_customer)
        result["customers"] = customers
        result["signSeconds"] = round(time.monotonic() - started, 2)
        stock = args.stock if args.stock > customers else 2 * customers
        result["stock"] = stock
        log("open loop: %d customers signed and scheduled in %.2f s; stock %d" % (customers, result["signSeconds"], stock))

        # The sale opens before wrk starts: startsAt 1 s ahead, then wait for status open. It ends by itself
        # a few seconds after wrk (so the ledger is final even if the admin close below is refused).
        admin = token("crowd-admin", admin=True)
        sale_id = "open-%s-%s" % (order_path, base64.b16encode(os.urandom(3)).decode().lower())
        starts_ms = int(time.time() * 1000) + 1000
        wrk_seconds = int(args.hold_seconds + args.duration + args.drain_seconds + 0.999)
        sale_seconds = wrk_seconds + 6
        sale.create_sale(topology.port, admin, sale_id, "open loop %s" % order_path, stock, starts_ms, sale_seconds,
                         args.limit)
        result["saleId"], result["startsAtMs"], result["saleSeconds"] = sale_id, starts_ms, sale_seconds
        if not wait_until(lambda: request(topology.port, "GET", "/sales/%s" % sale_id, bearer=admin,
                                          timeout=2)[1].get("status") == "open", 15, 0.1):
            raise RuntimeError("the sale did not open within 15 s")

        out_dir = os.path.join(workdir, "wrk")
        os.makedirs(out_dir)
        script = os.path.join(workdir, "open.lua")
        # wrk connects every connection first; the schedule starts --hold-seconds after wrk does.
        origin_us = int((time.time() + args.hold_seconds) * 1e6)
        write_open_lua(script, origin_us, schedule_prefix, out_dir, sale_id,
                       warm_end_us=origin_us - 1500000 if args.warm else 0,
                       warm_per_thread=args.connections // args.threads)
        argv = wrk_argv(args.threads, args.connections, wrk_seconds, script, topology.port)
        result["wrkCommand"] = " ".join(argv)
        if time.time() * 1e6 > origin_us - 0.5e6:
            raise RuntimeError("set-up took too long: the schedule would start before wrk connected")
        if (starts_ms + sale_seconds * 1000) * 1000 < time.time() * 1e6 + wrk_seconds * 1e6 + 1e6:
            raise RuntimeError("set-up took too long: the sale would end before wrk does")

        before = cpu_snapshot(topology)
        wrk = start_wrk(procs, argv, workdir)
        result["fdMax"] = _sample_fds(wrk, topology, wrk_seconds + 60, warn, procs)
        result["cpuSeconds"] = cpu_used(topology, before)
        result["fdHardLimit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        result["wrkExit"] = wrk.returncode
        wrk_summary = read_wrk_output(result, workdir, wrk.returncode)

        # Close the sale so that the ledger is final (answers still in flight when wrk stopped included).
        status, body = request(topology.port, "POST", "/admin/sales/%s/close" % sale_id, bearer=admin, timeout=10)
        settle = args.settle_seconds
        if status != 200:
            warn.append("the admin close answered %s (%s); waited for the sale's own end instead"
                        % (status, (body or {}).get("code") if isinstance(body, dict) else body))
            settle += max(0.0, starts_ms / 1000.0 + sale_seconds - time.time())
        if not wait_until(lambda: sale.closed(topology.redis_port, sale_id), settle, 0.25):
            warn.append("the sale was not closed %.0f s after the run" % settle)
        analyse_open(result, topology, sale_id, out_dir, wrk_summary, origin_us, dues_by_customer)
        result["logs"] = _log_tails(topology, workdir)

        if args.with_ceiling:
            # A saturated run leaves orders queued in the service (and server connections in haproxy's
            # pool); the ceiling would measure their drain, so it waits for the processes to go quiet.
            result["ceilingQuietAfterSeconds"] = wait_quiet(topology, 30)
            if result["ceilingQuietAfterSeconds"] is None:
                warn.append("the service was still busy 30 s after the run; the ceiling shares the cores with it")
            result["ceiling"] = measure_ceiling(topology, args.threads, args.connections, log)
        ok = True
        return result
    except Exception as error:  # noqa: BLE001 - the logs stay for a look
        raise RuntimeError("%s (logs kept in %s)" % (error, workdir)) from error
    finally:
        if topology:
            topology.stop()
        if args.keep_workdir or not ok:
            result["workdir"] = workdir
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _sample_fds(wrk, topology, timeout, warn, procs):
    """Waits for wrk (at most `timeout` s, then stops it) while sampling the open fds of every process once a
    second (haproxy's limit is the tight one); returns the largest count per process."""
    watched = [("wrk", wrk)] + [("instance-%d" % i, p) for i, p in enumerate(topology.instances)]
    if topology.haproxy:
        watched.append(("haproxy", topology.haproxy))
    fd_max = {}
    deadline = time.monotonic() + timeout
    try:
        while wrk.popen.poll() is None and time.monotonic() < deadline:
            for name, child in watched:
                count = fd_count(child.pid)
                if count is not None:
                    fd_max[name] = max(fd_max.get(name, 0), count)
            time.sleep(1.0)
        if wrk.popen.poll() is None:
            warn.append("wrk did not stop by itself within -d + 60 s; killed")
    finally:
        procs.stop(wrk, grace=2)
    return fd_max


def _log_tails(topology, workdir):
    """Server-side evidence: what the instances and haproxy logged (log level error)."""
    logs = {}
    for name in ["instance-%d" % i for i in range(len(topology.instances))] + (["haproxy"] if topology.haproxy else []):
        try:
            with open(os.path.join(workdir, name + ".log"), errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        logs[name] = {"lines": len(lines), "tail": lines[-5:]}
    return logs
