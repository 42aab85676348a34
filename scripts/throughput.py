#!/usr/bin/env python3
"""The order hot path at wire speed, side by side in one run, with wrk as the load generator.

Rows, each on a fresh `flashsale serve` process and a fresh redis-server (AOF, `appendfsync always`; both
started by scripts/crowd.py's Topology), alternated in this order for --rounds rounds:

    healthz  GET /healthz                          (the HTTP ceiling; the server runs --order-path engine)
    noop     POST /sales/{id}/orders, --order-path noop    (parse, authenticate, validate, seal, answer 201)
    engine   POST /sales/{id}/orders, --order-path engine  (leased shards, local buckets, group commit)
    direct   POST /sales/{id}/orders, --order-path direct  (one EVALSHA per order)

    .venv/bin/python scripts/throughput.py --bin /tmp/tp-bin/flashsale --rounds 3
    .venv/bin/python scripts/throughput.py --bin /tmp/tp-bin/flashsale --profile 10   # perf profile of engine

Load: `wrk -t2 -c1000` (closed loop, 1,000 connections), every request a different customer. Each order row
creates its own sale (stock 10,000,000, perCustomerLimit 2, started), so nothing sells out and a customer
is new within the sale. Python signs --customers (400,000) HS256 tokens once per run (crowd.token, sub
`tp-000000`..; about 8 s) and every order row reuses them against its own new sale: the customers are
distinct within each sale, which is what the server sees (every row is also a fresh process, so nothing is
cached across rows). wrk thread t reads its own file (customers t*N/2 .. (t+1)*N/2 - 1) and pre-builds one
request per customer in init() (`Authorization: Bearer`, `Content-Type: application/json`,
`Idempotency-Key: tp-<n>`, crowd.BODY). If a row ever sends more requests than a thread's slice holds, the
thread goes round again with a new Idempotency-Key (limit 2 allows each customer a second order); that is
reported as `wrapped` (a third pass would show up as 409 LIMIT_EXCEEDED).

One row, step by step:
- wait (at most --quiet-timeout) until the machine is quiet (< --quiet-cores busy over 1 s): somebody
  else's compile on these 2 cores would be measured as ours;
- crowd.Topology: redis-server + one `flashsale serve --order-path <path>`; create the sale (order rows);
- start wrk (-d long; it is stopped with SIGINT). Its delay() hook holds every connection's first request
  until --hold (8 s) after the start, and thread 1 connects 0.5 s after thread 0 (see init()): the server
  listens with Hummingbird's default accept backlog, so 1,000 simultaneous connects overflow it and the
  dropped handshakes are retransmitted after 1, 2, 4 ... s (or, answered with a SYN cookie, stay unknown to
  the server until the client's first request); held, the idle server accepts them all, while under load
  the stragglers' first requests would sit seconds in wrk's histogram. The script checks (/proc/PID/fd
  joined with /proc/net/tcp) that the server holds all connections at the opening instant (a warning if
  not; the warm-up then starts once it does);
- once both wrk threads got a first answer: --warmup (1 s), then the window: utime+stime
  (/proc/PID/stat) of the server, redis-server and wrk, and /proc/stat for the whole machine, are sampled,
  the script sleeps --seconds (8) and samples again, then stops wrk with SIGINT (wrk prints its summary
  and runs done());
- the Lua response() hook counts answers by status (and error code) in 10 ms buckets of CLOCK_REALTIME;
  the rate is the answers in the whole buckets inside the window divided by their span. For order rows
  the rate is 201 answers/s (orders/s) and the other statuses are listed. CPU per request (per 201 for
  order rows) = CPU seconds used in the window / (rate x window);
- latency p50/p99 are wrk's own histogram: from the opening instant to SIGINT, i.e. warm-up and window
  (wrk cannot reset it; the hold is not in it, wrk's clock starts when a request is written);
- the machine's CPU in the window (/proc/stat) is reported as irq+softirq (mostly loopback TCP; the
  kernel's tick accounting also charges it to the stime of whichever process it interrupted, so it is
  largely inside the three processes' figures already), idle, and `others` = busy (irq included) minus the
  three processes; a row where other processes used more than --others-limit cores is re-run (--retries
  times, the discarded runs stay in the JSON) and, if it stays shared, kept with a WARNING;
- engine/direct rows: after wrk, every 201 of the whole run must be a sold unit (`fs:{sale}:sold`); sold
  may exceed the 201s by up to -c (the requests in flight when wrk was stopped are committed unread).

Medians across rounds are reported per row, with the ratios noop/healthz, engine/noop, engine/healthz,
engine/direct.

--against BIN: every row is run twice per round, right after each other, once with --bin and once with BIN
(the row named `<row>@against`): a change measured side by side with what it changes, alternated round by
round so that the machine's drift falls on both. The report adds, per row, --bin against BIN per round: the
rate and the server's CPU per request (e.g. `ratio noop vs against: rate 1.04, server us 0.95`).

--profile SECONDS (instead of the table): one engine server under the same order load; after the warm-up,
`perf record -g -p <server> -- sleep SECONDS`; writes to --report-dir profile-engine.txt (`perf report
--no-children --stdio --percent-limit 1.5`), profile-engine-flat.txt (`--sort dso,sym -g none`, all
symbols) and profile-engine-groups.txt (each sample attributed to the nearest frame, leaf to root, that
names a component -- token verification, sealing, JSON, engine, NIO, ... -- and to its leaf's kind:
retain/release, allocation, generic metadata, kernel ...; see PROFILE_COMPONENTS). Swift names go through
swift-demangle when it is installed.

Everything is on 127.0.0.1; every process started is stopped at the end (also on an error, Ctrl-C or
SIGTERM); every wait is bounded. JSON goes to reports/throughput/ (--report-dir).
"""

import argparse
import base64
import collections
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
import crowd  # noqa: E402 - the building blocks: Redis/Processes/Topology/token/request/cpu_seconds

ROOT = crowd.ROOT
ROWS = ("healthz", "noop", "engine", "direct")
# Rows measured only when named in --rows: the engine with a commit delay (FLASHSALE_COMMIT_DELAY_US =
# --commit-delay-us), side by side with the plain engine row.
EXTRA_ROWS = ("engine-delay",)
BUCKETS_PER_SECOND = 100  # 10 ms buckets
AGAINST = "@against"  # the suffix of a row run with --against's binary


def kind(row):
    """What a row measures, whichever binary runs it."""
    return row[:-len(AGAINST)] if row.endswith(AGAINST) else row

LUA = r"""-- Generated by scripts/throughput.py for one row; see its docstring.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } tp_timespec;
int clock_gettime(int clk_id, tp_timespec *tp);
int usleep(unsigned int usec);
]]
local ts = ffi.new("tp_timespec")
local function bucket()  -- CLOCK_REALTIME in 10 ms buckets
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 100 + math.floor(tonumber(ts.tv_nsec) / 10000000)
end
local function now_us()
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local MODE = "@MODE@"
local TOKENS = "@TOKENS@"
local CUSTOMERS = @CUSTOMERS@
local THREADS = @THREADS@
local PATHS = {@PATHS@}  -- customer n orders on PATHS[n mod #PATHS + 1] (one sale, or one per master)
local BODY = '@BODY@'
local MARK = "@MARK@"
local OPEN_US = @OPEN_US@  -- no request leaves before this instant (CLOCK_REALTIME, microseconds)

local all_threads = {}
function setup(thread)
  thread:set("tid", #all_threads)
  all_threads[#all_threads + 1] = thread
end

-- thread state
tokens, reqs = {}, {}
lo, slice, issued, wrapped = 0, 0, 0, 0
counts = {}       -- counts[status * 1e12 + bucket] or counts["status:CODE@bucket"] = answers
started = false
local fixed

-- one order request is pre .. token .. mid .. idempotency key .. post (or key first: wrk.format writes the
-- headers in table order, which differs between the threads' Lua states), with pre, mid and post per path
local pres, mids, posts, key_first = {}, {}, {}, false

local function order(n, key)
  local p = (lo + n - 1) % #PATHS + 1
  if key_first then return pres[p] .. key .. mids[p] .. tokens[n] .. posts[p] end
  return pres[p] .. tokens[n] .. mids[p] .. key .. posts[p]
end

function init(args)
  -- wrk runs thread 0 while it still initialises thread 1: 0.5 s apart, each thread's 500 connects arrive as
  -- their own burst (1,000 at once overflow the server's SYN queue too; the kernel then answers with SYN
  -- cookies, and a connect whose cookie ACK was dropped stays unknown to the server until its first
  -- request, i.e. after the hold)
  if tid > 0 then ffi.C.usleep(500000) end
  if MODE == "healthz" then
    fixed = wrk.format("GET", "/healthz", {}, nil)
    return
  end
  -- the template through wrk.format (Host and Content-Length as wrk writes them), split at two markers
  for p, path in ipairs(PATHS) do
    local template = wrk.format("POST", path, {["Authorization"] = "Bearer \1",
      ["Content-Type"] = "application/json", ["Idempotency-Key"] = "\2"}, BODY)
    local t = template:find("\1", 1, true)
    local k = template:find("\2", 1, true)
    key_first = k < t
    local first, second = math.min(t, k), math.max(t, k)
    pres[p], mids[p], posts[p] = template:sub(1, first - 1), template:sub(first + 1, second - 1), template:sub(second + 1)
  end
  lo = math.floor(CUSTOMERS * tid / THREADS)  -- this thread's file holds customers lo .. lo + slice - 1
  for line in io.lines(TOKENS .. "-" .. tid .. ".txt") do
    slice = slice + 1
    tokens[slice] = line
    reqs[slice] = order(slice, "tp-" .. (lo + slice - 1))
  end
end

-- Every connection's first request waits for the opening instant (--hold seconds after wrk started), so
-- that all -c connections are established, and accepted by the still idle server, before the load starts:
-- the server listens with a short backlog, 1,000 connects at once overflow it and the dropped ones
-- retransmit after 1, 2, 4 ... s; under load they would straggle in and their first requests would wait
-- seconds. wrk's latency clock starts when a request is written, so the hold is not in its histogram.
-- (delay() is asked once per request, so it cannot poll: the instant is fixed when wrk starts.)
opened = false
function delay()
  if opened then return 0 end
  local now = now_us()
  if now >= OPEN_US then opened = true; return 0 end
  return math.floor((OPEN_US - now) / 1000) + 1
end

function request()
  if fixed then return fixed end
  issued = issued + 1
  if issued <= slice then return reqs[issued] end
  -- more requests than customers: round again with a new key (limit 2 allows a second order)
  wrapped = wrapped + 1
  local n = (issued - 1) % slice + 1
  return order(n, "tp-" .. math.floor((issued - 1) / slice) .. "-" .. (lo + n - 1))
end

function response(status, headers, body)
  local b = bucket()
  local key
  if status < 400 then
    key = status * 1e12 + b  -- a number key: no string per answer (wrk cannot copy nested tables to done())
  else
    key = status .. ":" .. (string.match(body or "", '"code"%s*:%s*"([%w_]+)"') or "-") .. "@" .. b
  end
  counts[key] = (counts[key] or 0) + 1
  if not started then
    started = true
    local f = io.open(MARK .. "-" .. tid, "w")
    if f then f:write(string.format("%.0f\n", b)); f:close() end
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(all_threads) do
    local c = {}
    for key, n in pairs(t:get("counts") or {}) do
      if type(key) == "number" then
        c[#c + 1] = string.format('["%d",%.0f,%d]', math.floor(key / 1e12), key % 1e12, n)
      else
        local label, b = string.match(key, "^(.*)@(%d+)$")
        c[#c + 1] = string.format('["%s",%s,%d]', label, b, n)
      end
    end
    parts[#parts + 1] = string.format('{"tid":%d,"slice":%d,"issued":%d,"wrapped":%d,"counts":[%s]}',
      t:get("tid"), t:get("slice"), t:get("issued"), t:get("wrapped"), table.concat(c, ","))
  end
  local e = summary.errors
  io.write(string.format('TP_JSON {"durationUs":%.0f,"requests":%d,"bytes":%.0f,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latencyUs":{"min":%.0f,"mean":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f},"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, table.concat(parts, ",")))
end
"""


def write_lua(path, mode, tokens_file, customers, threads, sale_id, mark, open_us):
    """`sale_id`: one sale, or a list of sales (customer n orders on sale n mod len)."""
    sales = sale_id if isinstance(sale_id, (list, tuple)) else [sale_id]
    text = (LUA.replace("@OPEN_US@", "%d" % open_us).replace("@MODE@", mode).replace("@TOKENS@", tokens_file).replace("@CUSTOMERS@", str(customers))
            .replace("@THREADS@", str(threads)).replace("@PATHS@", ", ".join('"/sales/%s/orders"' % s for s in sales))
            .replace("@BODY@", crowd.BODY).replace("@MARK@", mark))
    with open(path, "w") as handle:
        handle.write(text)


def customer_name(index):
    return "tp-%06d" % index


def sign_tokens(prefix, customers, threads):
    """<prefix>-<t>.txt: wrk thread t's contiguous slice of the customers, one token a line."""
    for thread in range(threads):
        with open("%s-%d.txt" % (prefix, thread), "w") as handle:
            for index in range(customers * thread // threads, customers * (thread + 1) // threads):
                handle.write(crowd.token(customer_name(index)) + "\n")


def create_sale(port, sale_id, stock, limit):
    """An open sale (startsAt ~1 s ahead, 1 h long); returns once it has started."""
    starts_ms = int(time.time() * 1000) + 1000
    status, body = crowd.request(port, "POST", "/admin/sales", bearer=crowd.token("tp-admin", admin=True), body={
        "id": sale_id, "name": "throughput %s" % sale_id, "stock": stock, "startsAt": crowd.rfc3339_ms(starts_ms),
        "durationSeconds": 3600, "perCustomerLimit": limit}, timeout=10)
    if status != 201:
        raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))
    time.sleep(max(0.0, starts_ms / 1000.0 - time.time() + 0.2))


class Load:
    """wrk on one row's server: started, then stopped with SIGINT (bounded), its TP_JSON parsed."""

    def __init__(self, args, procs, workdir, port, mode, tokens_file, sale_id, duration):
        self.procs, self.workdir = procs, workdir
        self.mark = os.path.join(workdir, "started")
        script = os.path.join(workdir, "load.lua")
        self.open_at = time.time() + args.hold
        write_lua(script, mode, tokens_file, args.customers, args.threads, sale_id, self.mark, self.open_at * 1e6)
        self.argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % duration,
                     "--timeout", "%ds" % args.wrk_timeout, "--latency", "-s", script, "http://127.0.0.1:%d" % port]
        self.threads = args.threads
        self.child = crowd.procs_start_wrk(procs, self.argv, workdir)

    def wait_started(self, timeout):
        ok = crowd.wait_until(lambda: all(os.path.exists("%s-%d" % (self.mark, t)) for t in range(self.threads)),
                              timeout, 0.05)
        if not ok:
            raise RuntimeError("wrk threads did not all get a first answer within %d s (wrk %s)"
                               % (timeout, "exited %s" % self.child.returncode if self.child.poll() is not None else "running"))

    def stop(self):
        """SIGINT (wrk prints its summary and runs done()), bounded; returns (stdout, TP_JSON dict)."""
        child = self.child
        try:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
            stdout, _ = child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            stdout, _ = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                self.procs.stop(child, grace=2)
            elif child in self.procs.children:
                self.procs.children.remove(child)
        stdout = stdout.decode("utf-8", "replace")
        with open(os.path.join(self.workdir, "wrk.out"), "w") as handle:
            handle.write(stdout)
        line = next((l for l in stdout.splitlines() if l.startswith("TP_JSON ")), None)
        if line is None:
            raise RuntimeError("wrk printed no TP_JSON line (exit %s):\n%s" % (child.returncode, stdout[-2000:]))
        return stdout, json.loads(line[len("TP_JSON "):])


def accepted_connections(pid, port):
    """TCP connections to `port` that process `pid` has accepted (its fds joined with /proc/net/tcp)."""
    inodes = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()  # /proc/net/tcp is read in pages: an entry may show up twice while the table changes
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    # local address, state 01 = ESTABLISHED, inode
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                        found.add(fields[9])
        except OSError:
            pass
    return len(found)


def wait_accepted(pid, port, connections, timeout):
    """Waits (at most timeout seconds) until the server has accepted `connections`; returns how many it has.

    The server listens with a short accept backlog (Hummingbird's default): 1,000 connects at once overflow
    it, the kernel drops the handshakes it cannot queue and the clients retransmit after 1, 2, 4 ... s. While
    the server is idle (wrk holds the first requests, see delay() in LUA) it empties the queue fast and
    the connects are done after a retransmit or two; under load they would straggle in for seconds, and those
    first requests would wait seconds in wrk's histogram."""
    deadline = time.monotonic() + timeout
    while True:
        held = accepted_connections(pid, port)
        if held >= connections or time.monotonic() >= deadline:
            return held
        time.sleep(0.05)


def machine_ticks():
    """/proc/stat's first line: (busy ticks outside irq/softirq, irq+softirq ticks, idle+iowait ticks)."""
    with open("/proc/stat") as handle:
        v = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return user + nice + system + steal, irq + softirq, idle + iowait


def machine_cores(before, after, seconds):
    return {name: round((after[i] - before[i]) / crowd.CLK_TCK / seconds, 3)
            for i, name in enumerate(("busy", "irq", "idle"))}


def proc_snapshot():
    """{pid: (name, cpu seconds)} of every process on the machine."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            sec = crowd.cpu_seconds(int(name))
            try:
                with open("/proc/%s/comm" % name) as handle:
                    comm = handle.read().strip()
            except OSError:
                continue
            if sec is not None:
                out[int(name)] = (comm, sec)
    return out


def busiest(before, after, seconds, exclude=(), limit=3):
    """The processes that used the most CPU between two snapshots, as "name[pid] cores"."""
    rows = sorted(((after[p][1] - before.get(p, (None, 0.0))[1], after[p][0], p) for p in after
                   if p not in exclude and p != os.getpid()), reverse=True)
    return ", ".join("%s[%d] %.2f" % (comm, pid, sec / seconds) for sec, comm, pid in rows[:limit] if sec > 0) or "-"


def wait_quiet(limit_cores, timeout, log):
    """Waits (bounded) until the machine's CPU use over 1 s is below limit_cores, e.g. until somebody else's
    compile is over; returns the last 1 s sample's busy cores."""
    deadline = time.monotonic() + timeout
    said = False
    while True:
        before, procs_before = machine_ticks(), proc_snapshot()
        time.sleep(1.0)
        cores = machine_cores(before, machine_ticks(), 1.0)
        busy = cores["busy"] + cores["irq"]
        if busy < limit_cores or time.monotonic() >= deadline:
            if busy >= limit_cores:
                log("  the machine is still busy (%.2f cores) after %d s; going on" % (busy, timeout))
            elif said:
                log("  quiet again")
            return round(busy, 2)
        if not said:
            log("  waiting for a quiet machine: %.2f cores busy (%s)" % (busy, busiest(procs_before, proc_snapshot(), 1.0)))
            said = True


def cpu_of(pids):
    return {name: crowd.cpu_seconds(pid) for name, pid in pids.items()}


def run_row(args, row, round_no, procs, tokens_file, log):
    workdir = tempfile.mkdtemp(prefix="tp-%s-" % row.replace("@", "-"))
    result = {"row": row, "round": round_no}
    binary = args.against if row.endswith(AGAINST) else args.bin
    row = kind(row)
    topology, load, ok = None, None, False
    try:
        result["busyBeforeCores"] = wait_quiet(args.quiet_cores, args.quiet_timeout, log)
        path = "engine" if row in ("healthz", "engine-delay") else row
        server_env = {"FLASHSALE_COMMIT_DELAY_US": str(args.commit_delay_us)} if row == "engine-delay" else {}
        topology = crowd.Topology(procs, binary, workdir, 1, path, server_env=server_env)
        sale_id = "tp-%s-%d-%s" % (row, round_no, base64.b16encode(os.urandom(3)).decode().lower())
        if row != "healthz":
            create_sale(topology.port, sale_id, args.stock, args.limit)
            result["saleId"] = sale_id
        server_pid = topology.instances[0].pid
        load = Load(args, procs, workdir, topology.port, "healthz" if row == "healthz" else "order", tokens_file,
                    sale_id, int(args.warmup + args.seconds + 120))
        result["wrkCommand"] = " ".join(load.argv)
        # wrk holds the first requests until open_at; by then the idle server should hold every connection
        result["acceptedAtOpen"] = wait_accepted(server_pid, topology.port, args.connections,
                                                 max(0.0, load.open_at - 0.05 - time.time()))
        if result["acceptedAtOpen"] < args.connections:
            result.setdefault("warnings", []).append(
                "only %d of %d connections were accepted at the opening instant (raise --hold); the warm-up "
                "starts once all are" % (result["acceptedAtOpen"], args.connections))
        accepted = wait_accepted(server_pid, topology.port, args.connections, args.accept_timeout)
        if accepted < args.connections:
            raise RuntimeError("the server had accepted only %d of %d connections %d s after the opening instant"
                               % (accepted, args.connections, args.accept_timeout))
        load.wait_started(30)
        result["firstAnswersAfterOpenSeconds"] = round(time.time() - load.open_at, 2)
        time.sleep(args.warmup)
        pids = {"server": server_pid, "redis": topology.redis.pid, "wrk": load.child.pid}
        snap_before = proc_snapshot()
        stats_before = command_stats(topology.redis_port)
        before, ticks_before, t1 = cpu_of(pids), machine_ticks(), time.time()
        time.sleep(args.seconds)
        after, ticks_after, t2 = cpu_of(pids), machine_ticks(), time.time()
        stats_after = command_stats(topology.redis_port)
        snap_after = proc_snapshot()
        if load.child.poll() is not None:
            raise RuntimeError("wrk ended before the measured window did (exit %s)" % load.child.returncode)
        stdout, summary = load.stop()
        load = None
        result["windowSeconds"] = round(t2 - t1, 3)
        result["cpuSeconds"] = {name: round(after[name] - before[name], 3) for name in pids
                                if before[name] is not None and after[name] is not None}
        if len(result["cpuSeconds"]) != len(pids):
            raise RuntimeError("a process was gone when its CPU was sampled: %s -> %s" % (before, after))
        # the whole machine in the window: irq/softirq time is also charged (tick accounting) to the stime of the
        # process it interrupted, so `others` = everything busy, irq included, minus the three processes
        machine = machine_cores(ticks_before, ticks_after, t2 - t1)
        machine["others"] = round(machine["busy"] + machine["irq"] - sum(result["cpuSeconds"].values()) / (t2 - t1), 3)
        result["machineCores"] = machine
        result["shared"] = machine["others"] > args.others_limit
        if result["shared"]:
            result.setdefault("warnings", []).append(
                "other processes used %.2f cores during the window (%s): this row shared the CPU"
                % (machine["others"], busiest(snap_before, snap_after, t2 - t1, exclude=set(pids.values()))))
        analyse(result, summary, t1, t2)
        result["redisCommands"] = command_deltas(stats_before, stats_after, result["rate"] * result["windowSeconds"])
        result["wrkText"] = [l for l in stdout.splitlines() if not l.startswith("TP_JSON ")]
        if row in ("engine", "direct", "engine-delay"):
            # after the row: every 201 of the whole wrk run must be a sold unit in the ledger
            time.sleep(1.0)
            result["ledgerSold"] = int(crowd.redis_call(topology.redis_port, "GET", "fs:{%s}:sold" % sale_id) or 0)
            acked = result["answersWholeRun"].get("201", 0)
            # the requests in flight when wrk was stopped are committed, but nobody reads their answers
            result["soldNotSeenByWrk"] = result["ledgerSold"] - acked
            if acked > result["ledgerSold"]:
                result.setdefault("warnings", []).append("%d answers 201 but the ledger sold %d" % (acked, result["ledgerSold"]))
            elif result["soldNotSeenByWrk"] > args.connections:
                result.setdefault("warnings", []).append("the ledger sold %d more than the 201s wrk read (more than -c)"
                                                         % result["soldNotSeenByWrk"])
        ok = True
        return result
    except Exception as error:  # noqa: BLE001 - the logs stay for a look
        raise RuntimeError("%s (logs kept in %s)" % (error, workdir)) from error
    finally:
        if load is not None:
            try:
                load.stop()
            except Exception:  # noqa: BLE001 - stopping is what matters here
                pass
        if topology:
            topology.stop()
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            result["workdir"] = workdir


def command_stats(port):
    """Redis's own per-command counters (INFO commandstats): {command: (calls, usec)}."""
    text = crowd.redis_call(port, "INFO", "commandstats") or ""
    if isinstance(text, bytes):
        text = text.decode()
    stats = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_"):].partition(":")
            values = dict(f.split("=", 1) for f in fields.split(","))
            stats[name] = (int(values["calls"]), int(values["usec"]))
    return stats


def command_deltas(before, after, per):
    """Commands Redis ran in the window: calls and usec per counted answer (per 201 for order rows), the
    busiest first. EVALSHA's usec include the commands its script ran (they are also listed by name), and
    `evalsha calls per` is the inverse of the orders per group-commit batch."""
    rows = []
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0 > 0:
            rows.append({"command": name, "calls": calls - c0, "usec": usec - u0,
                         "callsPer": round((calls - c0) / per, 3) if per else None,
                         "usecPer": round((usec - u0) / per, 2) if per else None})
    return sorted(rows, key=lambda r: -r["usec"])


def analyse(result, summary, t1, t2):
    row = kind(result["row"])
    first = math.ceil(t1 * BUCKETS_PER_SECOND)
    last = math.floor(t2 * BUCKETS_PER_SECOND)  # buckets [first, last) lie wholly inside the window
    span = (last - first) / BUCKETS_PER_SECOND
    window, whole = {}, {}
    for thread in summary["threads"]:
        for key, b, n in thread["counts"]:  # [status or "status:CODE", 10 ms bucket, answers]
            whole[key] = whole.get(key, 0) + n
            if first <= b < last:
                window[key] = window.get(key, 0) + n
    result["answersInWindow"] = dict(sorted(window.items()))
    # answers per second of the whole wrk run, second 0 = the window's start (negative: warm-up and connects)
    timeline = {}
    for thread in summary["threads"]:
        for key, b, n in thread["counts"]:
            second = int(math.floor((b - first) / BUCKETS_PER_SECOND))
            cell = timeline.setdefault(second, {})
            cell[key] = cell.get(key, 0) + n
    result["timeline"] = [[second, dict(sorted(timeline[second].items()))] for second in sorted(timeline)]
    result["answersWholeRun"] = dict(sorted(whole.items()))
    result["bucketSpanSeconds"] = span
    counted = window.get("200", 0) if row == "healthz" else window.get("201", 0)
    result["rate"] = round(counted / span, 1)                      # requests/s (healthz) or orders/s
    result["answersPerSecond"] = round(sum(window.values()) / span, 1)
    result["other"] = {k: v for k, v in window.items() if k != ("200" if row == "healthz" else "201")}
    per = result["rate"] * result["windowSeconds"]
    result["cpuMicrosPer"] = {name: round(sec * 1e6 / per, 1) if per else None for name, sec in result["cpuSeconds"].items()}
    result["cpuCores"] = {name: round(sec / result["windowSeconds"], 3) for name, sec in result["cpuSeconds"].items()}
    lat = summary["latencyUs"]
    result["latencyMs"] = {k: round(v / 1000.0, 2) for k, v in lat.items()}
    result["wrk"] = {k: summary[k] for k in ("durationUs", "requests", "bytes", "errors")}
    result["wrk"]["wrapped"] = sum(t["wrapped"] for t in summary["threads"])
    result["wrk"]["slices"] = [t["slice"] for t in summary["threads"]]
    if result["wrk"]["wrapped"]:
        result.setdefault("warnings", []).append("wrk went round its customers (%d requests re-used a customer)"
                                                 % result["wrk"]["wrapped"])


# ------------------------------------------------------------------------------------------------ report

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(runs, rows):
    out = {}
    for row in rows:
        good = [r for r in runs if r["row"] == row and "error" not in r]
        if not good:
            continue
        other = {}
        for r in good:
            for k in r["other"]:
                other[k] = median([x["other"].get(k, 0) for x in good])
        out[row] = {
            "rounds": len(good),
            "rate": median([r["rate"] for r in good]),
            "ratePerRound": [r["rate"] for r in good],
            "p50Ms": median([r["latencyMs"]["p50"] for r in good]),
            "p99Ms": median([r["latencyMs"]["p99"] for r in good]),
            "otherInWindow": other,
            "cpuMicrosPer": {n: median([r["cpuMicrosPer"].get(n) for r in good]) for n in ("server", "redis", "wrk")},
            "cpuCores": {n: median([r["cpuCores"].get(n) for r in good]) for n in ("server", "redis", "wrk")},
            "machineCores": {n: median([r["machineCores"].get(n) for r in good]) for n in ("busy", "irq", "idle", "others")},
            "sharedRounds": sum(1 for r in good if r.get("shared")),
            "wrkSocketErrors": {k: median([r["wrk"]["errors"][k] for r in good]) for k in ("connect", "read", "write", "timeout")},
        }
    ratios = {}

    def ratio(a, b):
        if a in out and b in out and out[b]["rate"]:
            per_round = [x["rate"] / y["rate"] for x, y in zip([r for r in runs if r["row"] == a and "error" not in r],
                                                               [r for r in runs if r["row"] == b and "error" not in r])
                         if y["rate"]]
            ratios["%s/%s" % (a, b)] = {"ofMedians": round(out[a]["rate"] / out[b]["rate"], 3),
                                        "perRound": [round(x, 3) for x in per_round],
                                        "medianOfRounds": round(median(per_round), 3) if per_round else None}
    for a, b in (("noop", "healthz"), ("engine", "noop"), ("engine", "healthz"), ("engine", "direct"), ("engine-delay", "engine")):
        ratio(a, b)
        ratio(a + AGAINST, b + AGAINST)
    for row in rows:
        if row.endswith(AGAINST) or row + AGAINST not in out:
            continue
        pairs = list(zip([r for r in runs if r["row"] == row and "error" not in r],
                         [r for r in runs if r["row"] == row + AGAINST and "error" not in r]))
        rates = [x["rate"] / y["rate"] for x, y in pairs if y["rate"]]
        server = [x["cpuMicrosPer"]["server"] / y["cpuMicrosPer"]["server"] for x, y in pairs
                  if x["cpuMicrosPer"].get("server") and y["cpuMicrosPer"].get("server")]
        ratios["%s vs against" % row] = {"ratePerRound": [round(x, 3) for x in rates],
                                         "rateMedian": round(median(rates), 3) if rates else None,
                                         "serverMicrosPerRound": [round(x, 3) for x in server],
                                         "serverMicrosMedian": round(median(server), 3) if server else None}
    return out, ratios


def print_report(medians, ratios, runs, seconds, rows, out=sys.stdout):
    header = ("row", "rate/s", "per round", "p50 ms", "p99 ms", "non-201 (window, median)", "srv us", "redis us",
              "wrk us", "srv cores", "redis cores", "wrk cores", "irq cores", "idle", "others", "shared")
    lines = []
    for row in rows:
        m = medians.get(row)
        if not m:
            lines.append((row, "ERROR") + ("",) * (len(header) - 2))
            continue
        other = ", ".join("%s:%g" % kv for kv in sorted(m["otherInWindow"].items())) or "-"
        lines.append((row + (" req/s" if kind(row) == "healthz" else " orders/s"), "%.0f" % m["rate"],
                      "/".join("%.0f" % r for r in m["ratePerRound"]), "%.2f" % m["p50Ms"], "%.2f" % m["p99Ms"],
                      other if kind(row) != "healthz" else "(non-200) " + other,
                      "%.1f" % m["cpuMicrosPer"]["server"], "%.1f" % m["cpuMicrosPer"]["redis"],
                      "%.1f" % m["cpuMicrosPer"]["wrk"], "%.2f" % m["cpuCores"]["server"],
                      "%.2f" % m["cpuCores"]["redis"], "%.2f" % m["cpuCores"]["wrk"], "%.2f" % m["machineCores"]["irq"],
                      "%.2f" % m["machineCores"]["idle"], "%.2f" % m["machineCores"]["others"],
                      "%d/%d" % (m["sharedRounds"], m["rounds"])))
    widths = [max(len(str(r[i])) for r in lines + [header]) for i in range(len(header))]
    print("medians over rounds; window %g s each; us = CPU microseconds per request (healthz) or per 201 (order rows);"
          " cores = CPU seconds / window seconds (irq = the machine's irq+softirq, mostly loopback TCP, largely"
          " charged to the processes' stime as well; others = CPU of processes other than server, redis and wrk;"
          " shared = rounds kept although others > --others-limit)" % seconds, file=out)
    for r in [header] + lines:
        print("  ".join(str(c).rjust(widths[i]) for i, c in enumerate(r)).rstrip(), file=out)
    print(file=out)
    for name, r in ratios.items():
        if name.endswith(" vs against"):
            print("ratio %s: rate %s (per round %s), server us %s (per round %s)"
                  % (name, r["rateMedian"], ", ".join("%.3f" % x for x in r["ratePerRound"]), r["serverMicrosMedian"],
                     ", ".join("%.3f" % x for x in r["serverMicrosPerRound"])), file=out)
            continue
        print("ratio %-15s %.3f  (per round %s, median of rounds %s)"
              % (name, r["ofMedians"], ", ".join("%.3f" % x for x in r["perRound"]), r["medianOfRounds"]), file=out)
    if "engine" in medians:
        e = medians["engine"]["cpuMicrosPer"]
        extra = "".join("; %s %.1f us" % (row, medians[row]["cpuMicrosPer"]["server"]) for row in ("healthz", "noop", "direct")
                        if row in medians)
        print("engine: server CPU per order %.1f us (redis %.1f us, wrk %.1f us)%s" % (e["server"], e["redis"], e["wrk"], extra),
              file=out)
    for r in runs:
        if r.get("redisCommands") and kind(r["row"]) != "healthz":
            top = r["redisCommands"][:8]
            print("redis %s round %d (INFO commandstats, per 201: calls x / usec): %s" % (
                r["row"], r["round"], ", ".join("%s %.3gx/%.2f" % (c["command"], c["callsPer"] or 0, c["usecPer"] or 0)
                                                 for c in top)), file=out)
    for r in runs:
        for warning in r.get("warnings", []):
            print("WARNING %s round %d: %s" % (r["row"], r["round"], warning), file=out)
        if "error" in r:
            print("ERROR %s round %d: %s" % (r["row"], r["round"], r["error"]), file=out)


# ------------------------------------------------------------------------------------------------ profile

# Who: the component of the nearest frame (leaf -> root) that names one; first pattern that matches a frame wins.
PROFILE_COMPONENTS = [
    ("token verification (BearerTokens.verify: Base64URL, HMAC-SHA256, claims JSON)",
     r"BearerTokens|Base64URL|HMAC|JSONObject|SHA256|sha256"),
    ("bearer header lookup (APIRoutes.authenticate/bearerToken)", r"APIRoutes\.(authenticate|bearerToken)"),
    ("sealing (FieldCipher.seal: AES-GCM)", r"FieldCipher|AES\.GCM|AESGCM|BoringSSLAEAD|aes_|gcm_|GCM"),
    ("JSON decode (request body)", r"decodeBody|OrderBody|JSONDecoder|JSONScanner|JSONMap|Decodable\.init|KeyedDecodingContainer"),
    ("JSON encode (delivery, response)", r"JSONEncoder|JSONWriter|jsonResponse|OrderResponse|Encodable\.encode"),
    ("hiredis / Redis client", r"hiredis|redis[A-Z_]|RedisClient|RedisConnection|RedisCommand|RESP"),
    ("engine: reservation, admission, buckets", r"ReservationService|ReservationEngine|Admission|Bucket|Shard|Lease|OrderID"),
    ("engine: group committer (batching, commit workers)", r"GroupCommitter|CommitWorker|BatchingThread|CommitBatch|Ledger"),
    ("metrics", r"Metrics|metrics|Counter\.|Histogram|Prometheus"),
    ("Hummingbird (router, request/response, handler)", r"Hummingbird|Router|HTTPChannelHandler|ApplicationProtocol|APIRoutes|HTTPServer|Middleware|RequestContext"),
    ("NIO (event loop, channels, HTTP/1 codec, llhttp)", r"NIO|Channel|EventLoop|Selector|ByteBuffer|llhttp|HTTPDecoder|HTTPResponseEncoder|BetterHTTPParser|ByteToMessage|PendingWrites|HTTP1ToHTTPServerCodec|Socket|ThreadOpsPosix"),
    ("Swift concurrency / dispatch (task scheduling)", r"swift_job_run|swift_task|AsyncTask|_dispatch|swift::runJob|TaskGroup|Continuation"),
]
PROFILE_COMPONENTS = [(name, re.compile(p)) for name, p in PROFILE_COMPONENTS]

# What: the leaf frame's kind.
PROFILE_KINDS = [
    ("swift_retain/release", r"^(swift_(retain|release|bridgeObjectRetain|bridgeObjectRelease|unknownObjectRetain|unknownObjectRelease|nonatomic_retain|nonatomic_release)|swift::RefCounts)"),
    ("allocation (jemalloc, swift_alloc/dealloc)", r"^(malloc|free|calloc|realloc|swift_allocObject|swift_deallocObject|swift_slowAlloc|swift_slowDealloc|_ContiguousArrayStorage.__deallocating|je_|sdallocx|mallocx|rallocx|swift::StackAllocator)"),
    ("generic metadata / casts / witnesses", r"(Metadata|getGenericMetadata|getWitnessTable|AssociatedTypeWitness|AssociatedConformance|tryCast|dynamicCast|__swift_instantiate|getCache|ConcurrentReadableHashMap|ConcurrentMap|TupleType|getEnumCaseMultiPayload|conformsToProtocol|ValueWitnesses|initializeWithCopy|initializeWithTake|assignWithCopy|destroy)"),
    ("exclusivity checks", r"^(swift_beginAccess|swift_endAccess|swift::runtime::AccessSet)"),
]
PROFILE_KINDS = [(name, re.compile(p)) for name, p in PROFILE_KINDS]


def parse_perf_script(text):
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            if cur is not None:
                samples.append(cur)
                cur = None
            continue
        if not line[0].isspace():
            cur = []
            continue
        m = re.match(r"\s+[0-9a-f]+\s+(.*)\s+\((.*)\)\s*$", line)
        if m and cur is not None:
            cur.append((m.group(1), m.group(2)))
    if cur:
        samples.append(cur)
    return samples


def leaf_kind(sym, dso):
    if "kernel" in dso:
        return "kernel (syscalls, TCP loopback, scheduler)"
    if "jemalloc" in dso:
        return "allocation (jemalloc, swift_alloc/dealloc)"
    for name, rx in PROFILE_KINDS:
        if rx.search(sym):
            return name
    if "libc.so" in dso or "ld-linux" in dso:
        return "libc (memmove, memcmp, locks, TLS)"
    if "libswiftCore" in dso:
        return "Swift stdlib code (collections, strings, hashing)"
    if "Foundation" in dso:
        return "Foundation code"
    if "Concurrency" in dso or "dispatch" in dso:
        return "Swift concurrency / dispatch runtime"
    if "hiredis" in dso:
        return "hiredis"
    return "compiled code in the flashsale binary (app, NIO, Hummingbird, BoringSSL: all linked in)"


def component_of(frames):
    for sym, dso in frames:
        if "kernel" in dso:
            continue
        if "hiredis" in dso:
            return "hiredis / Redis client"
        for name, rx in PROFILE_COMPONENTS:
            if rx.search(sym):
                return name
    if frames and all("kernel" in dso for _, dso in frames):
        return "kernel only (softirq, scheduler, idle)"
    return "unattributed"


def profile_groups(text):
    """`perf script -F comm,tid,ip,sym,dso` text (demangled) -> the grouped shares, as text."""
    samples = parse_perf_script(text)
    n = len(samples) or 1
    comp, kind, matrix = collections.Counter(), collections.Counter(), collections.Counter()
    for frames in samples:
        if not frames:
            continue
        c, k = component_of(frames), leaf_kind(*frames[0])
        comp[c] += 1
        kind[k] += 1
        matrix[(c, k)] += 1
    out = ["%d samples" % len(samples), "",
           "WHO (inclusive of everything below it): each sample goes to the nearest frame, leaf to root, that names a component",
           ""]
    for c, v in comp.most_common():
        out.append("%6.1f%%  %s" % (100.0 * v / n, c))
        parts = sorted(((matrix[(c, k)], k) for k in kind if matrix[(c, k)]), reverse=True)
        out.append("         " + "; ".join("%s %.1f%%" % (k, 100.0 * m / n) for m, k in parts[:5]))
    out += ["", "WHAT (the leaf frame's kind, whoever called it)", ""]
    for k, v in kind.most_common():
        out.append("%6.1f%%  %s" % (100.0 * v / n, k))
    leaves = collections.Counter((frames[0][0], os.path.basename(frames[0][1])) for frames in samples if frames)
    out += ["", "TOP SELF FRAMES (leaf symbol) with the component that called them", ""]
    callers = collections.defaultdict(collections.Counter)
    for frames in samples:
        if frames:
            callers[(frames[0][0], os.path.basename(frames[0][1]))][component_of(frames)] += 1
    for (sym, dso), v in leaves.most_common(25):
        top = ", ".join("%s %.1f%%" % (c.split(" (")[0], 100.0 * m / n) for c, m in callers[(sym, dso)].most_common(3))
        out.append("%6.2f%%  %s  [%s]  <- %s" % (100.0 * v / n, sym[:110], dso, top))
    inclusive = collections.Counter()
    for frames in samples:
        names = {re.sub(r"\(.*", "", sym).strip() for sym, dso in frames if os.path.basename(dso) == "flashsale"}
        inclusive.update(names)
    out += ["", "INCLUSIVE (children included) share of frames in the flashsale binary, top 90", ""]
    for sym, v in inclusive.most_common(90):
        out.append("%6.1f%%  %s" % (100.0 * v / n, sym[:150]))
    return "\n".join(out) + "\n"



def run_profile(args, procs, tokens_file, log):
    """One server (order path --profile-path, engine by default) under the order load; perf record -g of the
    server for --profile seconds. Reports profile-<path>*.txt."""
    if not shutil.which("perf"):
        raise RuntimeError("perf is not installed (apt-get install -y linux-perf)")
    workdir = tempfile.mkdtemp(prefix="tp-profile-")
    topology, load = None, None
    try:
        wait_quiet(args.quiet_cores, args.quiet_timeout, log)
        topology = crowd.Topology(procs, args.bin, workdir, 1, args.profile_path)
        sale_id = "tp-profile-%s" % base64.b16encode(os.urandom(3)).decode().lower()
        create_sale(topology.port, sale_id, args.stock, args.limit)
        load = Load(args, procs, workdir, topology.port, "order", tokens_file, sale_id, int(args.profile + 120))
        wait_accepted(topology.instances[0].pid, topology.port, args.connections, args.hold + args.accept_timeout)
        load.wait_started(args.hold + 30)
        time.sleep(max(args.warmup, 2.0))
        pid = topology.instances[0].pid
        data = os.path.join(workdir, "perf.data")
        argv = ["perf", "record", "-g", "-o", data, "-p", str(pid), "--", "sleep", str(args.profile)]
        log("profile: " + " ".join(argv))
        record = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=args.profile + 60)
        stdout, summary = load.stop()
        load = None
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--percent-limit", "1.5"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=600).stdout.decode("utf-8", "replace")
        flat = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none", "--sort", "dso,sym"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=600).stdout.decode("utf-8", "replace")
        demangle = shutil.which("swift-demangle")
        if demangle:  # perf leaves Swift symbols mangled
            report = subprocess.run([demangle, "--simplified"], input=report.encode(), stdout=subprocess.PIPE,
                                    timeout=120).stdout.decode("utf-8", "replace")
            flat = subprocess.run([demangle, "--simplified"], input=flat.encode(), stdout=subprocess.PIPE,
                                  timeout=120).stdout.decode("utf-8", "replace")
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=600).stdout
        if demangle:
            script = subprocess.run([demangle, "--simplified"], input=script, stdout=subprocess.PIPE, timeout=600).stdout
        grouped = profile_groups(script.decode("utf-8", "replace"))
        os.makedirs(args.report_dir, exist_ok=True)
        paths = {}
        for name, text in (("profile-%s.txt" % args.profile_path, report), ("profile-%s-flat.txt" % args.profile_path, flat),
                           ("profile-%s-groups.txt" % args.profile_path, grouped)):
            paths[name] = os.path.join(args.report_dir, name)
            with open(paths[name], "w") as handle:
                handle.write("# perf record -g -p <%s server> -- sleep %d, under wrk -t%d -c%d (order load); %s\n"
                             % (args.profile_path, args.profile, args.threads, args.connections, record.stdout.decode("utf-8", "replace").strip().replace("\n", " | ")))
                handle.write(text)
        total = sum(n for t in summary["threads"] for k, _, n in t["counts"] if k == "201")
        log("profile: %d answers 201 during the wrk run; reports %s" % (total, ", ".join(os.path.relpath(p) for p in paths.values())))
        return paths
    finally:
        if load is not None:
            try:
                load.stop()
            except Exception:  # noqa: BLE001
                pass
        if topology:
            topology.stop()
        if args.keep_workdir:
            log("profile: workdir (perf.data) kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/flashsale"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="the measured window per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="after both wrk threads got a first answer")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hold", type=float, default=8.0,
                        help="wrk's first requests leave this long after wrk starts (its init and the connects)")
    parser.add_argument("--accept-timeout", type=int, default=60,
                        help="if connections are missing at the opening instant, wait this long for them")
    parser.add_argument("--quiet-cores", type=float, default=0.25,
                        help="before each row, wait until the machine uses less CPU than this (somebody else's build)")
    parser.add_argument("--quiet-timeout", type=int, default=600, help="... but no longer than this (seconds)")
    parser.add_argument("--others-limit", type=float, default=0.15,
                        help="warn when other processes used more cores than this during a window")
    parser.add_argument("--retries", type=int, default=2,
                        help="re-run a row (at most this many times) when other processes used more than "
                             "--others-limit cores during its window; the discarded runs stay in the JSON")
    parser.add_argument("--wrk-timeout", type=int, default=10, help="wrk --timeout (seconds)")
    parser.add_argument("--customers", type=int, default=400000, help="tokens signed once, re-used by every order row")
    parser.add_argument("--stock", type=int, default=10000000)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of %s" % ",".join(ROWS + EXTRA_ROWS))
    parser.add_argument("--commit-delay-us", type=int, default=2000, help="the engine-delay row's FLASHSALE_COMMIT_DELAY_US")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS",
                        help="instead of the table: perf-record one engine server for SECONDS under the order load")
    parser.add_argument("--profile-path", choices=("engine", "noop", "direct"), default="engine",
                        help="with --profile: the order path of the profiled server")
    parser.add_argument("--report-dir", default=os.path.join(ROOT, "reports/throughput"))
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--against", metavar="BIN", help="run every row with this binary too, right after --bin's (see above)")
    args = parser.parse_args()
    rows = [r for r in ROWS + EXTRA_ROWS if r in args.rows.split(",")]
    if not rows:
        parser.error("--rows names none of %s" % ",".join(ROWS + EXTRA_ROWS))
    if not 0 <= args.commit_delay_us <= 100_000:
        parser.error("--commit-delay-us 0..100000")
    if args.connections % args.threads:
        parser.error("--connections must be a multiple of --threads")
    args.bin = os.path.abspath(args.bin)  # the servers run in their own temp dirs
    if not os.access(args.bin, os.X_OK):
        parser.error("no executable at --bin %s" % args.bin)
    if args.against:
        args.against = os.path.abspath(args.against)
        if not os.access(args.against, os.X_OK):
            parser.error("no executable at --against %s" % args.against)
        if args.profile:
            parser.error("--against measures rows; --profile profiles one binary")
        rows = [name for row in rows for name in (row, row + AGAINST)]
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            parser.error("%s is not installed" % tool)

    def log(message):
        print(message, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    procs = crowd.Processes()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {"startedAt": started, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": {"cpus": os.cpu_count(), "loadavgBefore": os.getloadavg()}, "bin": args.bin, "against": args.against,
              "settings": {k: getattr(args, k) for k in ("rounds", "seconds", "warmup", "connections", "threads",
                                                         "wrk_timeout", "customers", "stock", "limit")},
              "runs": [], "discarded": []}
    tokdir = tempfile.mkdtemp(prefix="tp-tokens-")
    failed = False
    try:
        tokens_file = os.path.join(tokdir, "tokens")
        t0 = time.time()
        sign_tokens(tokens_file, args.customers, args.threads)
        log("throughput: signed %d customer tokens in %.1f s" % (args.customers, time.time() - t0))
        if args.profile:
            run_profile(args, procs, tokens_file, log)
            return 0
        for round_no in range(1, args.rounds + 1):
            for row in rows:
                for attempt in range(args.retries + 1):
                    log("throughput: round %d, %s%s" % (round_no, row, " (again: the CPU was shared)" if attempt else ""))
                    try:
                        result = run_row(args, row, round_no, procs, tokens_file, log)
                    except KeyboardInterrupt:
                        raise
                    except Exception as error:  # noqa: BLE001 - one failed row is reported, the others go on
                        result = {"row": row, "round": round_no, "error": str(error)}
                    result["attempt"] = attempt + 1
                    if "error" in result:
                        log("  ERROR: " + result["error"])
                    else:
                        log("  %s/s %.0f; in window %s; p50 %.2f ms p99 %.2f ms; cpu s %s; wrk errors %s"
                            % ("req" if kind(row) == "healthz" else "orders", result["rate"], json.dumps(result["answersInWindow"]),
                               result["latencyMs"]["p50"], result["latencyMs"]["p99"], json.dumps(result["cpuSeconds"]),
                               json.dumps(result["wrk"]["errors"])))
                        log("  machine cores in the window %s" % json.dumps(result["machineCores"]))
                        for warning in result.get("warnings", []):
                            log("  WARNING: " + warning)
                    if result.get("shared") and attempt < args.retries:
                        result["discarded"] = "re-run: other processes used the CPU during the window"
                        report["discarded"].append(result)
                        continue
                    if "error" in result:
                        failed = True
                    report["runs"].append(result)
                    break
        medians, ratios = summarise(report["runs"], rows)
        report["medians"], report["ratios"] = medians, ratios
        print()
        print_report(medians, ratios, report["runs"], args.seconds, rows)
    except KeyboardInterrupt:
        log("throughput: interrupted; stopping everything it started")
        report["interrupted"] = True
        failed = True
    finally:
        procs.stop_all()
        shutil.rmtree(tokdir, ignore_errors=True)
        if not args.profile:
            os.makedirs(args.report_dir, exist_ok=True)
            path = os.path.join(args.report_dir, "throughput-%s.json" % started)
            with open(path, "w") as handle:
                json.dump(report, handle, indent=2, sort_keys=True)
            print("throughput: report %s" % os.path.relpath(path, os.getcwd()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
