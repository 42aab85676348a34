"""One run of the reference crowd (closed loop): a fresh topology, the customers' tokens, a sale opening a
few seconds ahead, wrk started `--hold-seconds` before the opening instant, the ledger once the sale
settled, and the figures (measures.analyse). The run's temp dir is removed unless the run failed or
`--keep-workdir`."""

import base64
import os
import shutil
import subprocess
import tempfile
import time

from flashsale_chaos.clients import pairs, wait_until

from . import sale
from .clients import redis_call
from .measures import analyse
from .tokens import customer_name, token
from .topology import Topology
from .workload import cpu_snapshot, cpu_used, read_wrk_output, start_wrk, write_lua, wrk_argv


def run_crowd(args, order_path, round_no, procs, log):
    workdir = tempfile.mkdtemp(prefix="crowd-%s-" % order_path)
    result = {"path": order_path, "instances": args.instances, "round": round_no, "customers": args.customers,
              "stock": args.stock, "limit": args.limit, "connections": args.connections, "threads": args.threads,
              "warnings": []}
    topology = None
    ok = False
    try:
        log("crowd: %s, %d instance(s), round %d (workdir %s)" % (order_path, args.instances, round_no, workdir))
        topology = Topology(procs, args.bin, workdir, args.instances, order_path, fleet_order_delay_ms=args.fleet_order_delay_ms)
        result["fleetOrderDelayMs"] = args.fleet_order_delay_ms if args.instances > 1 else 0
        appendfsync = redis_call(topology.redis_port, "CONFIG", "GET", "appendfsync")
        result["redisAppendfsync"] = pairs(appendfsync).get("appendfsync")

        tokens_file = os.path.join(workdir, "tokens.txt")
        with open(tokens_file, "w") as handle:
            for index in range(args.customers):
                handle.write(token(customer_name(index)) + "\n")
        admin = token("crowd-admin", admin=True)

        sale_id = "crowd-%s-%d-%s" % (order_path, round_no, base64.b16encode(os.urandom(3)).decode().lower())
        starts_ms = (int(time.time() * 1000) + int((args.hold_seconds + args.lead_seconds) * 1000) + 999) // 1000 * 1000
        sale.create_sale(topology.port, admin, sale_id, "crowd %s" % order_path, args.stock, starts_ms,
                         args.sale_seconds, args.limit)
        result["saleId"], result["startsAtMs"] = sale_id, starts_ms
        open_us = starts_ms * 1000 + args.open_margin_ms * 1000

        out_dir = os.path.join(workdir, "wrk")
        os.makedirs(out_dir)
        script = os.path.join(workdir, "crowd.lua")
        # --warm: one GET /healthz per connection during the hold, ending 1.5 s before the opening (the page a
        # customer loaded before midnight), so the front's connections to the instances exist when the crowd comes.
        result["warm"] = args.warm
        write_lua(script, open_us, tokens_file, out_dir, args.threads, args.customers, sale_id,
                  warm_end_us=open_us - 1500000 if args.warm else 0, warm_per_thread=args.connections // args.threads)
        duration = int(args.hold_seconds + args.crowd_seconds + 0.999)
        argv = wrk_argv(args.threads, args.connections, duration, script, topology.port)
        result["wrkCommand"] = " ".join(argv)

        delay = starts_ms / 1000.0 - args.hold_seconds - time.time()
        if delay < 0.5:
            raise RuntimeError("set-up took too long: wrk would start %.1f s late" % -delay)
        time.sleep(delay)
        before = cpu_snapshot(topology)
        wrk = start_wrk(procs, argv, workdir)
        try:
            wrk.popen.wait(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            wrk.kill()
            result["warnings"].append("wrk did not stop by itself within -d + 60 s; killed")
        finally:
            procs.stop(wrk, grace=2)  # interrupted: stop it now; ended: forget it
        result["cpuSeconds"] = cpu_used(topology, before)
        result["wrkExit"] = wrk.returncode
        wrk_summary = read_wrk_output(result, workdir, wrk.returncode)

        # The ledger, once the sale settled (closed, or no change for a while).
        if not wait_until(lambda: sale.closed(topology.redis_port, sale_id), args.settle_seconds, 0.25):
            result["warnings"].append("the sale was not closed %d s after the crowd" % args.settle_seconds)
        analyse(result, topology, sale_id, out_dir, wrk_summary, open_us, admin)
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
