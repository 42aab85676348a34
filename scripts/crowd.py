#!/usr/bin/env python3
"""An outside measurement of the reference flash crowd, with wrk as the load generator.

The reference case: one sale of 1,000 units, at most 2 per customer, and 10,000 distinct customers who each
press "order" (quantity 1) once at the opening instant. Everything runs on 127.0.0.1: this script starts
its own redis-server (AOF, `appendfsync always`, as scripts/lib.sh does) in a temp dir, N `flashsale serve`
instances (`--instances 1` or `3`; with 3, haproxy in front: roundrobin, http mode, keep-alive, no health
checks so that a busy /readyz cannot take an instance out mid-crowd), creates the sale through
`POST /admin/sales` a few seconds in the future, and drives the crowd with wrk. Every process it starts is
stopped at the end (also on an error, Ctrl-C or SIGTERM); every subprocess call has a timeout.

    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --instances 1 --compare
    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --instances 3 --compare --rounds 2
    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --ceiling   # wrk's own ceiling on /healthz

How the crowd is generated (the Lua script is written per run into the temp dir; read it there with
--keep-workdir):
- Python signs the 10,000 customer tokens (sub `cust-00000` .. `cust-09999`, HS256) into a file. Each wrk
  thread (`-t2`) owns a contiguous slice of the customers (thread 0: 0..4999, thread 1: 5000..9999) and
  pre-builds one request per customer in `init()`: `POST /sales/{id}/orders`, `Authorization: Bearer`,
  `Content-Type: application/json`, `Idempotency-Key: crowd-<n>`, body
  `{"quantity":1,"delivery":{...}}`. wrk's `request()` cannot tell which connection it serves, so the
  thread's connections take the thread's customers in turn from one counter: no customer is sent twice,
  and a connection sends its next customer only after its previous answer (closed loop, 1,000 in flight).
  A connection with no customer left is parked (its `delay()` returns an hour) until wrk's `-d` ends.
- Opening instant: wrk is started `--hold-seconds` (3 s) before `startsAt`, so all 1,000 connections are
  established first; wrk's `delay()` hook then holds each connection's first request until
  `startsAt + --open-margin-ms` (1 ms) on CLOCK_REALTIME (the server decides "started" with Redis `TIME` and
  its own clock, the same host clock). So customers do not get SALE_NOT_STARTED and no retry is needed:
  wrk cannot tie an answer to the request it answers, so a customer who got SALE_NOT_STARTED could not be
  re-sent as the same customer. Any SALE_NOT_STARTED answer (and any request generated before the
  instant, `early`) is counted and printed as a WARNING: such a run under-counts those customers.

How arrival order and FCFS are measured (the honest part):
- Arrival = the wall-clock time (CLOCK_REALTIME through LuaJIT's FFI, microseconds; `os.clock` is CPU time
  and `os.time` has 1 s resolution) at which wrk's `request()` produced that customer's request, i.e.
  immediately before wrk writes it to the socket. Both wrk threads read the same system clock, so the two
  threads' sends interleave correctly into ONE global order (ties, rare, broken by thread and sequence).
  It is the send order at the client, not the order in which the server read the requests: the kernel's
  loopback delivery, haproxy (with 3 instances) and the server's event loops can reorder requests sent
  microseconds apart. The report gives the spread of the first K sends (how simultaneous they were).
  With 3 instances haproxy logs, per request, when it had read it and its queue and connect times to the
  instance: the report gives the order in which the front handed the customers over (`front`: the FCFS
  ceiling that order leaves the engine, and the engine's precision against it; see front_order()).
- Winners = customers holding a confirmed order in the ledger after the sale settled (read from Redis, so
  customers who got 202 and were served from the waiting list count, and nobody is taken on the word of
  an HTTP answer). K = the number of winners.
- FCFS precision = |first K customers by arrival  AND  winners| / K. With 1,000 connections and K near
  1,000, the first K arrivals are essentially the initial burst (every connection's first request, sent
  within a few ms of the instant); a later customer is only sent after one of those got its answer, so
  FCFS < 1 means units went to customers who arrived after somebody in the first K who did not get one.
  Also reported: how many winners arrived after rank K ("late winners") and the largest winner rank.
- Each 201's `customerId` is kept and checked against the ledger: a 201 whose customer holds no confirmed
  order is printed as ACKED-BUT-MISSING (must be 0). `sold` above the stock is printed as OVERSOLD.
  The same `customerId` gives the winners' exact latency (their send -> their 201), `latency201Ms`.
- Premature SOLD_OUT (one-sided): SOLD_OUT answers the client had received before the ledger's
  `soldOutAtMs` were decided before the sale sold out; they are counted and printed as a WARNING.
- Latency p50/p90/p99 are wrk's own (send to answer of every request wrk completed, 201s and fast 409s
  alike; the hold before the instant is not included). `req/s` is the crowd's: answers received divided
  by (last answer - first send); wrk's own Requests/sec is also kept but it divides by the whole `-d`
  window, hold and parked tail included, so it is not the crowd's rate.
- The CPU seconds used during the crowd by wrk, redis, haproxy and each instance are reported (the
  machine is small; wrk shares the cores with the service).

Results are printed as a table and written as JSON to reports/crowd/ (`--report-dir`). With `--html PATH`
also one self-contained page (inline SVG, no script) with a section per crowd run: what the latency figures
mean, units left over time from the opening instant with the ledger's sell-out, answers by outcome per 25 ms,
the winners' latency by send time, and the summary (`make demo` writes it to reports/demo-*.html).

The open-loop row (`--open-loop`): N connections (`--connections`, 10,000) send R orders/s together
(`--rate`, 5,000) for D seconds (`--duration`, 10), each order a different customer (R*D pre-signed tokens,
`Idempotency-Key` per customer, quantity 1), against a sale whose stock exceeds R*D (nothing sells out),
limit 2, opened before wrk starts; per-customer and per-address rate limits off as above.

    .venv/bin/python scripts/crowd.py --bin /tmp/crowd-bin/flashsale --open-loop --instances 1

- Schedule: each connection sends every N/R seconds (2 s at the defaults) from a random phase within the
  first interval, starting `--hold-seconds` (5 s) after wrk starts so that all connections are established
  first. wrk's `delay()` does not say which connection it is called for, so each thread holds its
  connections' send times merged in time order (written by Python, one customer per slot) and a connection
  that is free (connected, or just answered) takes the earliest slot not yet taken and waits until it is
  due. While answers come back within the interval this is each connection's own schedule; a connection
  is closed loop only when its answer comes after its next send was due, and here that shows as a slot
  already due when taken: a "late send" (counted, with how late). 201 answers slower than the interval
  are counted too: on a strictly per-connection schedule those would delay a send.
- wrk's event loop keeps its timers in an unsorted list and walks it twice per turn, reading the clock per
  timer: with N connections waiting, wrk's own CPU grows with N * R (at the defaults it can take a core or
  more of this 2-core machine); its CPU seconds are reported next to the service's.
- `--warm`: each connection first serves one `GET /healthz` during the hold (granted by `delay()` to the
  first N/threads calls of each thread, ending 1.5 s before the schedule; the answers are not counted), so
  the orders meet connections that have already served a request, as on a page that loaded the sale.
- Latency: the table and the p95/p99 targets are from each 201's intended send time (the slot's due
  time: a late send counts its lateness); a 201 names its customer, hence its slot. wrk's own latency
  (send -> answer; its coordinated-omission fill-in only touches answers slower than wrk's runtime /
  answers per connection, about 3.6 s here) and the 201s' latency from the actual send are logged too.
- Achieved rate: sends inside the D-second window / D, answers / (last answer - first send), and answers
  in each second of the window. Answers by status (201/202/409/429/503/other) and wrk's socket errors.
- After wrk, the sale is closed (admin close) and the ledger checked: no oversell, nobody over the limit,
  every 201 in the ledger, sold == number of 201s (requests still unanswered when wrk's `-d` ended
  would break the last one; they are counted).
- With 3 instances haproxy must hold N client connections: 2 fds each by its own reckoning, above the
  hard limit of 20,000, so it runs with `no strict-limits` and `http-reuse always` (idle clients share
  server connections); the open fds of wrk, haproxy and each instance are sampled during the run.
- Afterwards wrk's own ceiling in the same setting (the same front, -t and -c, GET /healthz, closed loop,
  5 s) unless `--no-ceiling`.
"""

import argparse
import base64
import hashlib
import hmac
import html
import http.client
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JWT_SECRET = "crowd-secret-0123456789abcdef-" + base64.b16encode(os.urandom(4)).decode()
BODY = '{"quantity":1,"delivery":{"name":"A B","phone":"+15550100","address":"1 Main St"}}'
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------- clients

class Redis:
    """A minimal RESP2 client (one connection, blocking, with a timeout) -- as chaos/flashsale_chaos/clients.py."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            return self.file.read(size + 2)[:-2].decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError("bad RESP line %r" % line)


def redis_call(port, *args, timeout=5.0):
    client = Redis(port, timeout)
    try:
        return client(*args)
    finally:
        client.close()


def pairs(flat):
    flat = flat or []
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWT_HEADER = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def token(subject, admin=False, ttl=3600):
    now = int(time.time())
    claims = {"sub": subject, "exp": now + ttl, "iat": now}
    if admin:
        claims["scope"] = "admin"
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing = (JWT_HEADER + "." + payload).encode()
    return JWT_HEADER + "." + payload + "." + b64url(hmac.new(JWT_SECRET.encode(), signing, hashlib.sha256).digest())


def request(port, method, path, body=None, bearer=None, timeout=5.0):
    """One request on a fresh connection to 127.0.0.1: (status, json-or-text)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {}
        if bearer:
            headers["Authorization"] = "Bearer " + bearer
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")
    finally:
        connection.close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails is simply "not yet"
            pass
        time.sleep(interval)
    return False


def rfc3339_ms(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


# --------------------------------------------------------------------------------------------- processes

class Processes:
    """Every child this script starts; stop_all() stops them (SIGTERM, SIGKILL after a grace period)."""

    def __init__(self):
        self.children = []

    def start(self, name, argv, workdir, env=None):
        log = open(os.path.join(workdir, name + ".log"), "ab")
        try:
            child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=workdir, start_new_session=True)
        finally:
            log.close()
        child.crowd_name = name
        self.children.append(child)
        return child

    def stop(self, child, grace=10.0):
        if child.poll() is None:
            try:
                child.terminate()
                child.wait(grace)
            except subprocess.TimeoutExpired:
                child.kill()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            except OSError:
                pass
        if child in self.children:
            self.children.remove(child)

    def stop_all(self):
        for child in reversed(list(self.children)):
            try:
                self.stop(child)
            except Exception:  # noqa: BLE001 - keep stopping the others
                try:
                    child.kill()
                except OSError:
                    pass


def cpu_seconds(pid):
    """utime + stime of a live process (seconds), None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


class Topology:
    """redis-server (AOF always) + N instances (+ haproxy when N > 1), all on 127.0.0.1."""

    def __init__(self, procs, binary, workdir, instances, order_path, haproxy_maxconn=9000, fleet_order_delay_ms=0):
        self.procs, self.workdir = procs, workdir
        self.fleet_order_delay_ms = fleet_order_delay_ms
        self.redis, self.instances, self.haproxy = None, [], None
        self.haproxy_maxconn, self.haproxy_warnings = haproxy_maxconn, []
        try:
            self._start(binary, instances, order_path)
        except BaseException:
            self.stop()  # a topology that failed to start leaves no process behind
            raise

    def _start(self, binary, instances, order_path):
        procs, workdir = self.procs, self.workdir
        self.redis_port = free_port()
        redis_dir = os.path.join(workdir, "redis")
        os.makedirs(redis_dir)
        self.redis = procs.start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                           "--dir", redis_dir, "--save", "", "--appendonly", "yes",
                                           "--appendfsync", "always", "--daemonize", "no"], workdir)
        if not wait_until(lambda: redis_call(self.redis_port, "PING") == "PONG", 15):
            raise RuntimeError("redis-server did not start (see %s/redis.log)" % workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_") and k != "MONGO_URI"}
        env.update({
            "FLASHSALE_JWT_SECRET": JWT_SECRET,
            "FLASHSALE_SHUTDOWN_DELAY_SECONDS": "0",
            "FLASHSALE_DATA_KEY": base64.b64encode(os.urandom(32)).decode(),
            "FLASHSALE_RATE_LIMIT_CUSTOMER": "0",
            "FLASHSALE_RATE_LIMIT_ADDRESS": "0",
            "FLASHSALE_LOG_LEVEL": "error",
        })
        if instances > 1 and self.fleet_order_delay_ms:
            env["FLASHSALE_FLEET_ORDER_DELAY_MS"] = str(self.fleet_order_delay_ms)
        if instances > 1:
            # haproxy stamps every request's arrival (X-Request-Start, overwritten): the instances order their
            # customers across the fleet by the time the one front door read them (docs/how-an-order-is-decided.md).
            env["FLASHSALE_TRUST_REQUEST_START"] = "true"
            # ... from haproxy only, on this host: its X-Forwarded-For and X-Request-Start are believed.
            env["FLASHSALE_TRUSTED_PROXIES"] = "127.0.0.1/32"
        self.instance_ports = [free_port() for _ in range(instances)]
        for index, port in enumerate(self.instance_ports):
            self.instances.append(procs.start(
                "instance-%d" % index,
                [binary, "serve", "--port", str(port), "--redis-url", "redis://127.0.0.1:%d" % self.redis_port,
                 "--order-path", order_path, "--instance-id", "crowd-%d" % index], workdir, env))
        for index, port in enumerate(self.instance_ports):
            if not wait_until(lambda: request(port, "GET", "/readyz", timeout=2)[0] == 200, 60, 0.2):
                raise RuntimeError("instance %d (port %d) did not become ready (see %s/instance-%d.log)"
                                   % (index, port, workdir, index))
        if instances > 1:
            self.port = free_port()
            config = os.path.join(workdir, "haproxy.cfg")
            # maxconn 9000: haproxy reserves 2 fds per connection and the hard fd limit here is 20,000
            # (maxconn 20000 makes it refuse to start); 9000 is still 9x the crowd's 1,000 connections.
            # Above that (the open loop's 10,000 idle-most-of-the-time clients) haproxy only starts with
            # `no strict-limits`, and `http-reuse always` lets those clients share a few server-side
            # connections, so the fds actually used stay near one per client (sampled during the run).
            # Each server then gets a maxconn of its own so that a closed loop through haproxy (the ceiling)
            # queues in haproxy instead of running out of fds.
            maxconn = self.haproxy_maxconn
            hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            over_limit = 2 * maxconn + 300 > hard_nofile
            server_maxconn = " maxconn %d" % max(100, (hard_nofile - maxconn - 500) // instances) if over_limit else ""
            servers = "\n".join("    server i%d 127.0.0.1:%d%s" % (i, p, server_maxconn)
                                 for i, p in enumerate(self.instance_ports))
            # One log line per request (to haproxy's stdout, haproxy.log): when haproxy had read the request
            # (microseconds), its queue and connect times to the instance (ms) and the Idempotency-Key, so
            # that the crowd's report can say in what order the front handed the customers over (front_order).
            with open(config, "w") as handle:
                handle.write("""global
    maxconn %d
    log stdout format raw local0 info
%sdefaults
    mode http
    log global
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 60s
    timeout queue 60s
frontend api
    bind 127.0.0.1:%d
    maxconn %d
    option forwardfor
    http-request set-var(txn.rx) date(0,us)
    http-request set-header X-Request-Start t=%%[var(txn.rx)]
    http-request capture req.hdr(Idempotency-Key) len 24
    log-format "FRONT %%[var(txn.rx)] %%Tw %%Tc %%hr %%s"
    default_backend instances
backend instances
    balance roundrobin
%s%s
""" % (maxconn, "    no strict-limits\n" if over_limit else "", self.port, maxconn,
       "    http-reuse always\n" if over_limit else "", servers))
            self.haproxy = procs.start("haproxy", ["haproxy", "-f", config, "-db"], workdir)
            if not wait_until(lambda: request(self.port, "GET", "/readyz", timeout=2)[0] == 200, 15):
                raise RuntimeError("haproxy did not come up (see %s/haproxy.log)" % workdir)
            with open(os.path.join(workdir, "haproxy.log"), errors="replace") as handle:
                self.haproxy_warnings = [line.strip() for line in handle if "ALERT" in line or "WARNING" in line]
        else:
            self.port = self.instance_ports[0]

    def cpu(self):
        named = [("redis", self.redis)] + [("instance-%d" % i, p) for i, p in enumerate(self.instances)]
        if self.haproxy:
            named.append(("haproxy", self.haproxy))
        return {name: cpu_seconds(child.pid) for name, child in named}

    def stop(self):
        for child in ([self.haproxy] if self.haproxy else []) + list(reversed(self.instances)) + ([self.redis] if self.redis else []):
            self.procs.stop(child)


# ---------------------------------------------------------------------------------------------- wrk lua

LUA = r"""-- Generated by scripts/crowd.py for one run; see its docstring.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } crowd_timespec;
int clock_gettime(int clk_id, crowd_timespec *tp);
]]
local ts = ffi.new("crowd_timespec")
local function now_us()  -- CLOCK_REALTIME, microseconds since the epoch (exact in a double)
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end
local function fmt(us) return string.format("%.0f", us) end

local OPEN_US = @OPEN_US@
local TOKENS = "@TOKENS@"
local OUT = "@OUT@"
local THREADS = @THREADS@
local CUSTOMERS = @CUSTOMERS@
local PATH = "@PATH@"
local BODY = '@BODY@'
local PARK_MS = 3600000
local WARM_END_US = @WARM_END_US@     -- 0: no warm-up (--warm)
local WARM_PER_THREAD = @WARM_PER_THREAD@

-- main state: one id per thread, gathered again in done()
local all_threads = {}
function setup(thread)
  thread:set("tid", #all_threads)
  all_threads[#all_threads + 1] = thread
end

-- thread state
reqs, custs, counts = {}, {}, {}
slice = 0        -- customers of this thread
reserved = 0     -- customers promised to a connection by delay()
issued = 0       -- customers sent (request() produced)
unreserved = 0   -- customers taken by request() without a delay() (a reconnect re-sends without delay())
filler = 0       -- GET /healthz sent because a reconnected connection found no customer left
parked = 0       -- delay() calls that found no customer left
held = 0         -- delay() calls before the opening instant (connections established in time)
early = 0        -- customers sent before the opening instant (should be 0)
answered = 0
warm_given = 0    -- warm-up requests granted by delay() (one per connection, before WARM_END_US)
warm_pending = 0  -- granted but not yet produced by request()
warmed = 0        -- warm-up requests sent
warm_answers = 0  -- their answers (not counted among the customers' answers)
first_send_us, last_send_us, last_resp_us = 0, 0, 0
running = false
local sends, resps, filler_req

function init(args)
  local lo = math.floor(CUSTOMERS * tid / THREADS)
  local hi = math.floor(CUSTOMERS * (tid + 1) / THREADS)
  local i = 0
  for line in io.lines(TOKENS) do
    if i >= lo and i < hi then
      slice = slice + 1
      custs[slice] = i
      reqs[slice] = wrk.format("POST", PATH, {["Authorization"] = "Bearer " .. line,
        ["Content-Type"] = "application/json", ["Idempotency-Key"] = "crowd-" .. i}, BODY)
    end
    i = i + 1
  end
  filler_req = wrk.format("GET", "/healthz", {}, nil)
  sends = io.open(OUT .. "/sends-" .. tid .. ".txt", "w")
  sends:setvbuf("full", 1048576)
  resps = io.open(OUT .. "/responses-" .. tid .. ".txt", "w")
  resps:setvbuf("full", 1048576)
end

function delay()
  running = true
  if WARM_END_US > 0 and warm_given < WARM_PER_THREAD and now_us() < WARM_END_US then
    warm_given = warm_given + 1
    warm_pending = warm_pending + 1
    return 0
  end
  if reserved >= slice then
    parked = parked + 1
    return PARK_MS
  end
  reserved = reserved + 1
  local now = now_us()
  if now < OPEN_US then
    held = held + 1
    -- wrk's timers have millisecond resolution and may fire up to 1 ms early: +2 keeps us after OPEN_US
    return math.floor((OPEN_US - now) / 1000) + 2
  end
  return 0
end

function request()
  if not running then return reqs[1] or filler_req end  -- wrk's start-up check calls request() once
  if warm_pending > 0 then
    warm_pending = warm_pending - 1
    warmed = warmed + 1
    return filler_req  -- GET /healthz, before the opening
  end
  if issued >= reserved then
    if reserved >= slice then
      filler = filler + 1
      return filler_req
    end
    reserved = reserved + 1
    unreserved = unreserved + 1
  end
  issued = issued + 1
  local t = now_us()
  if t < OPEN_US then early = early + 1 end
  if first_send_us == 0 then first_send_us = t end
  last_send_us = t
  sends:write(custs[issued], " ", fmt(t), "\n")
  if issued % 256 == 0 or issued == slice then sends:flush() end
  return reqs[issued]
end

function response(status, headers, body)
  local t = now_us()
  if warm_answers < warmed and t < OPEN_US and status == 200 then
    warm_answers = warm_answers + 1
    return
  end
  answered = answered + 1
  last_resp_us = t
  local code = "-"
  if status >= 400 then code = string.match(body or "", '"code"%s*:%s*"([%w_]+)"') or "-" end
  local key = tostring(status) .. ":" .. code
  counts[key] = (counts[key] or 0) + 1
  local customer = "-"
  if status == 201 then customer = string.match(body or "", '"customerId"%s*:%s*"([^"]*)"') or "?" end
  resps:write(fmt(t), " ", status, " ", code, " ", customer, "\n")
  if answered % 256 == 0 then resps:flush() end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(all_threads) do
    local c = {}
    for k, v in pairs(t:get("counts") or {}) do c[#c + 1] = string.format("%q:%d", k, v) end
    parts[#parts + 1] = string.format('{"tid":%d,"slice":%d,"reserved":%d,"issued":%d,"unreserved":%d,'
      .. '"filler":%d,"parked":%d,"held":%d,"early":%d,"warmed":%d,"warmAnswers":%d,"answered":%d,"firstSendUs":%s,'
      .. '"lastSendUs":%s,"lastRespUs":%s,"counts":{%s}}',
      t:get("tid"), t:get("slice"), t:get("reserved"), t:get("issued"), t:get("unreserved"), t:get("filler"),
      t:get("parked"), t:get("held"), t:get("early"), t:get("warmed"), t:get("warm_answers"), t:get("answered"),
      fmt(t:get("first_send_us")),
      fmt(t:get("last_send_us")), fmt(t:get("last_resp_us")), table.concat(c, ","))
  end
  local e = summary.errors
  io.write(string.format('CROWD_JSON {"durationUs":%s,"requests":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latencyUs":{"min":%s,"mean":%.1f,"p50":%s,"p75":%s,"p90":%s,"p95":%s,"p99":%s,"p999":%s,"max":%s},"threads":[%s]}\n',
    fmt(summary.duration), summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    fmt(latency.min), latency.mean, fmt(latency:percentile(50)), fmt(latency:percentile(75)),
    fmt(latency:percentile(90)), fmt(latency:percentile(95)), fmt(latency:percentile(99)),
    fmt(latency:percentile(99.9)), fmt(latency.max),
    table.concat(parts, ",")))
end
"""


def write_lua(path, open_us, tokens_file, out_dir, threads, customers, sale_id, warm_end_us=0, warm_per_thread=0):
    text = (LUA.replace("@OPEN_US@", str(open_us)).replace("@TOKENS@", tokens_file).replace("@OUT@", out_dir)
            .replace("@THREADS@", str(threads)).replace("@CUSTOMERS@", str(customers))
            .replace("@WARM_END_US@", str(warm_end_us)).replace("@WARM_PER_THREAD@", str(warm_per_thread))
            .replace("@PATH@", "/sales/%s/orders" % sale_id).replace("@BODY@", BODY))
    with open(path, "w") as handle:
        handle.write(text)


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


# ---------------------------------------------------------------------------------------------- one run

def customer_name(index):
    return "cust-%05d" % index


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
        result["redisAppendfsync"] = pairs(redis_call(topology.redis_port, "CONFIG", "GET", "appendfsync")).get("appendfsync")

        tokens_file = os.path.join(workdir, "tokens.txt")
        with open(tokens_file, "w") as handle:
            for index in range(args.customers):
                handle.write(token(customer_name(index)) + "\n")
        admin = token("crowd-admin", admin=True)

        sale_id = "crowd-%s-%d-%s" % (order_path, round_no, base64.b16encode(os.urandom(3)).decode().lower())
        starts_ms = (int(time.time() * 1000) + int((args.hold_seconds + args.lead_seconds) * 1000) + 999) // 1000 * 1000
        status, body = request(topology.port, "POST", "/admin/sales", bearer=admin, body={
            "id": sale_id, "name": "crowd %s" % order_path, "stock": args.stock, "startsAt": rfc3339_ms(starts_ms),
            "durationSeconds": args.sale_seconds, "perCustomerLimit": args.limit})
        if status != 201:
            raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))
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
        argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % duration, "--timeout", "30s",
                "--latency", "-s", script, "http://127.0.0.1:%d" % topology.port]
        result["wrkCommand"] = " ".join(argv)

        delay = starts_ms / 1000.0 - args.hold_seconds - time.time()
        if delay < 0.5:
            raise RuntimeError("set-up took too long: wrk would start %.1f s late" % -delay)
        time.sleep(delay)
        cpu_before = topology.cpu()
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk = procs_start_wrk(procs, argv, workdir)
        try:
            stdout, _ = wrk.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            wrk.kill()
            stdout, _ = wrk.communicate(timeout=10)
            result["warnings"].append("wrk did not stop by itself within -d + 60 s; killed")
        finally:
            if wrk.poll() is None:  # interrupted: stop it now
                procs.stop(wrk, grace=2)
            elif wrk in procs.children:
                procs.children.remove(wrk)
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after = topology.cpu()
        result["wrkExit"] = wrk.returncode
        result["cpuSeconds"] = {name: round(cpu_after[name] - cpu_before[name], 2)
                                for name in cpu_before if cpu_before[name] is not None and cpu_after.get(name) is not None}
        result["cpuSeconds"]["wrk"] = round((usage_after.ru_utime + usage_after.ru_stime)
                                            - (usage_before.ru_utime + usage_before.ru_stime), 2)
        stdout = stdout.decode("utf-8", "replace")
        with open(os.path.join(workdir, "wrk.out"), "w") as handle:
            handle.write(stdout)
        result["wrkText"] = [line for line in stdout.splitlines() if not line.startswith("CROWD_JSON ")]
        result.update(parse_wrk_text(stdout))
        summary_line = next((line for line in stdout.splitlines() if line.startswith("CROWD_JSON ")), None)
        if summary_line is None:
            raise RuntimeError("wrk printed no CROWD_JSON line (exit %s):\n%s" % (wrk.returncode, stdout[-2000:]))
        wrk_summary = json.loads(summary_line[len("CROWD_JSON "):])
        result["wrk"] = wrk_summary

        # The ledger, once the sale settled (closed, or no change for a while).
        def settled():
            meta = pairs(redis_call(topology.redis_port, "HGETALL", "fs:{%s}:meta" % sale_id))
            return meta.get("status") == "closed"
        if not wait_until(settled, args.settle_seconds, 0.25):
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


def procs_start_wrk(procs, argv, workdir):
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=workdir, start_new_session=True)
    child.crowd_name = "wrk"
    procs.children.append(child)
    return child


def read_lines(path):
    try:
        with open(path) as handle:
            return [line.split() for line in handle if line.strip()]
    except OSError:
        return []


def analyse(result, topology, sale_id, out_dir, wrk_summary, open_us, admin):
    warn = result["warnings"]
    threads = wrk_summary["threads"]

    # HTTP answers by status and code (the thread counters; the per-answer files are cross-checked).
    by_status = {}
    for thread in threads:
        for key, count in thread["counts"].items():
            by_status[key] = by_status.get(key, 0) + count
    result["answers"] = dict(sorted(by_status.items()))

    def total(prefix):
        return sum(v for k, v in by_status.items() if k.split(":")[0] == prefix)
    result["count201"], result["count202"] = total("201"), total("202")
    result["count409"], result["count503"] = total("409"), total("503")
    result["countOther"] = sum(by_status.values()) - sum(result["count%s" % s] for s in ("201", "202", "409", "503"))
    not_started = by_status.get("409:SALE_NOT_STARTED", 0)
    early = sum(t["early"] for t in threads)
    if not_started or early:
        warn.append("%d SALE_NOT_STARTED answers, %d requests sent before the instant: those customers were not retried"
                    % (not_started, early))
    result["warmed"] = sum(t.get("warmed", 0) for t in threads)
    result["warmAnswers"] = sum(t.get("warmAnswers", 0) for t in threads)
    if result.get("warm") and (result["warmed"] < result["connections"] or result["warmAnswers"] < result["warmed"]):
        warn.append("--warm: %d of %d connections sent their warm-up, %d answered 200 before the opening"
                    % (result["warmed"], result["connections"], result["warmAnswers"]))

    # Sends (arrival order) and answers, from the per-thread files.
    sends = []
    for thread in threads:
        for seq, row in enumerate(read_lines(os.path.join(out_dir, "sends-%d.txt" % thread["tid"]))):
            sends.append((int(row[1]), thread["tid"], seq, int(row[0])))
        if len(read_lines(os.path.join(out_dir, "sends-%d.txt" % thread["tid"]))) != thread["issued"]:
            warn.append("thread %d: sends file has fewer lines than issued requests" % thread["tid"])
    sends.sort()
    answers = []
    for thread in threads:
        rows = read_lines(os.path.join(out_dir, "responses-%d.txt" % thread["tid"]))
        if len(rows) != thread["answered"]:
            warn.append("thread %d: responses file has %d lines, %d answers counted" % (thread["tid"], len(rows), thread["answered"]))
        answers.extend(rows)
    sent_customers = [s[3] for s in sends]
    result["customersSent"] = len(sent_customers)
    result["customersUnsent"] = result["customers"] - len(set(sent_customers))
    if len(set(sent_customers)) != len(sent_customers):
        warn.append("a customer was sent twice")
    result["customersUnanswered"] = sum(t["issued"] + t["filler"] - t["answered"] for t in threads)
    if result["customersUnsent"]:
        warn.append("%d customers were never sent (the crowd outlasted -d; raise --crowd-seconds)" % result["customersUnsent"])
    for name in ("unreserved", "filler", "held"):
        result[name] = sum(t[name] for t in threads)
    if result["held"] < result["connections"]:
        warn.append("only %d of %d connections were established before the opening instant"
                    % (result["held"], result["connections"]))

    first_send = min((t["firstSendUs"] for t in threads if t["firstSendUs"]), default=0)
    last_resp = max((t["lastRespUs"] for t in threads), default=0)
    answered = sum(t["answered"] for t in threads)
    result["firstSendAfterStartsAtMs"] = round((first_send - result["startsAtMs"] * 1000) / 1000.0, 3) if first_send else None
    result["crowdSeconds"] = round((last_resp - first_send) / 1e6, 3) if first_send and last_resp > first_send else None
    result["crowdRequestsPerSecond"] = round(answered / result["crowdSeconds"], 1) if result["crowdSeconds"] else None
    result["lastAnswerAfterStartsAtMs"] = round((last_resp - result["startsAtMs"] * 1000) / 1000.0, 1) if last_resp else None
    lat = wrk_summary["latencyUs"]
    result["latencyMs"] = {k: round(v / 1000.0, 2) for k, v in lat.items()}

    # The ledger.
    port = topology.redis_port
    meta = pairs(redis_call(port, "HGETALL", "fs:{%s}:meta" % sale_id))
    sold = int(redis_call(port, "GET", "fs:{%s}:sold" % sale_id) or 0)
    pool = redis_call(port, "GET", "fs:{%s}:pool" % sale_id)
    stats = pairs(redis_call(port, "HGETALL", "fs:{%s}:stats" % sale_id))
    records = [json.loads(v) for v in (redis_call(port, "HVALS", "fs:{%s}:orders" % sale_id, timeout=30) or [])]
    confirmed = [r for r in records if r.get("s") == "confirmed"]
    result["ledger"] = {"status": meta.get("status"), "closedReason": meta.get("closedReason"), "sold": sold,
                        "pool": int(pool) if pool is not None else None, "orders": len(records),
                        "confirmedOrders": len(confirmed), "confirmedUnits": sum(int(r.get("q", 0)) for r in confirmed),
                        "ordersBySource": {}, "stats": stats,
                        "openedAtMs": int(meta["openedAtMs"]) if "openedAtMs" in meta else None,
                        "soldOutAtMs": int(meta["soldOutAtMs"]) if "soldOutAtMs" in meta else None}
    for record in confirmed:
        source = record.get("src", "?")
        result["ledger"]["ordersBySource"][source] = result["ledger"]["ordersBySource"].get(source, 0) + 1
    result["sold"] = sold
    result["oversold"] = sold > result["stock"] or result["ledger"]["confirmedUnits"] > result["stock"]
    if result["ledger"]["confirmedUnits"] != sold:
        warn.append("ledger: confirmed units %d != sold %d" % (result["ledger"]["confirmedUnits"], sold))
    opened, sold_out = result["ledger"]["openedAtMs"], result["ledger"]["soldOutAtMs"]
    result["sellOutMs"] = sold_out - opened if opened and sold_out else None
    result["sellOutFromStartsAtMs"] = sold_out - result["startsAtMs"] if sold_out else None
    # SOLD_OUT is due only once every unit is sold: an answer SOLD_OUT that the client had already received
    # before the ledger's soldOutAtMs (Redis TIME, the same host clock) was decided before the sell-out.
    # One-sided: a premature answer received after soldOutAtMs is not seen.
    sold_out_answers = [int(row[0]) for row in answers if row[1] == "409" and row[2] == "SOLD_OUT"]
    result["soldOutAnsweredBeforeSellOut"] = (sum(1 for t in sold_out_answers if t < sold_out * 1000)
                                              if sold_out else None)
    if result["soldOutAnsweredBeforeSellOut"]:
        warn.append("%d SOLD_OUT answers were received before the ledger's soldOutAtMs (first %.1f ms before)"
                    % (result["soldOutAnsweredBeforeSellOut"], (sold_out * 1000 - min(sold_out_answers)) / 1000.0))
    result["openedAfterStartsAtMs"] = opened - result["startsAtMs"] if opened else None
    try:
        status, summary = request(topology.port, "GET", "/sales/%s/summary" % sale_id, bearer=admin, timeout=10)
        result["serviceSummary"] = summary if status == 200 else {"status": status, "body": summary}
    except Exception as error:  # noqa: BLE001 - a cross-check only
        result["serviceSummary"] = {"error": str(error)}

    # Winners, acknowledged orders, FCFS.
    winners = {}
    by_customer = {}  # a winner's (last) order record: its instance and creation time, for lateWinnersDetail
    for record in confirmed:
        match = re.fullmatch(r"cust-(\d+)", record.get("c", ""))
        if match:
            winners[int(match.group(1))] = winners.get(int(match.group(1)), 0) + int(record.get("q", 0))
            by_customer[int(match.group(1))] = record
        else:
            warn.append("an order of an unexpected customer %r" % record.get("c"))
    acked = [row[3] for row in answers if row[1] == "201"]
    missing = sorted({c for c in acked if not (re.fullmatch(r"cust-(\d+)", c) and int(c[5:]) in winners)})
    result["ackedButMissing"] = len(missing)
    if missing:
        result["ackedButMissingSample"] = missing[:20]
    # A 201 names its customer, so the winners' own latency (send -> 201) is exact; other answers cannot be
    # tied to their request (wrk gives response() no connection), so they only count in wrk's latency.
    sent_at = {s[3]: s[0] for s in sends}
    won_latency = sorted((int(row[0]) - sent_at[int(row[3][5:])]) / 1000.0 for row in answers
                         if row[1] == "201" and re.fullmatch(r"cust-(\d+)", row[3]) and int(row[3][5:]) in sent_at)
    if won_latency:
        result["latency201Ms"] = quantiles(won_latency)
    # the per-request rows, for --html only (keys starting with "_" are left out of the JSON report)
    result["_sends"], result["_answers"] = sends, answers
    k = len(winners)
    rank = {customer: position for position, customer in enumerate(sent_customers)}
    first_k = set(sent_customers[:k])
    winner_ranks = sorted(rank[c] for c in winners if c in rank)
    fcfs = {"K": k, "winnersNotSent": sum(1 for c in winners if c not in rank)}
    # Winners sent after rank K: their rank, the instance whose lease sold to them, and when their order was
    # created after the sale opened in the ledger (at most 50, earliest sent first).
    opened_ms = result["ledger"].get("openedAtMs")
    result["lateWinnersDetail"] = [{"rank": rank[c] + 1, "instance": by_customer[c].get("i"),
                                    "createdAfterOpeningMs": int(by_customer[c]["t"]) - opened_ms if opened_ms else None}
                                   for c in sorted((c for c in winners if c in rank and rank[c] >= k), key=rank.get)
                                   if c in by_customer][:50]
    if k:
        fcfs["precision"] = round(len(first_k & set(winners)) / k, 4)
        fcfs["lateWinners"] = sum(1 for r in winner_ranks if r >= k)
        fcfs["maxWinnerRank"] = winner_ranks[-1] + 1 if winner_ranks else None
        if len(sends) >= k:
            fcfs["firstKSendSpreadMs"] = round((sends[k - 1][0] - sends[0][0]) / 1000.0, 3)
        # the same question per wrk thread alone (its own send order, its own winners), for comparison
        per_thread = []
        for thread in threads:
            order = [s[3] for s in sends if s[1] == thread["tid"]]
            won = {c for c in order if c in winners}
            if won:
                per_thread.append(len(set(order[:len(won)]) & won) / len(won))
        fcfs["perThreadMeanPrecision"] = round(sum(per_thread) / len(per_thread), 4) if per_thread else None
    result["fcfs"] = fcfs
    result["winners"] = k
    if topology.haproxy and k:
        result["front"] = front_order(os.path.join(topology.workdir, "haproxy.log"), sends, winners, k)
        result["front"]["lagToEngineMs"] = front_lag(topology.instance_ports)


def front_lag(ports):
    """How late the instances saw their customers: `flashsale_front_lag_seconds` (X-Request-Start to the
    engine) of every instance summed, as the bucket bounds holding the median and the 95th percentile (ms).
    The engine can order across instances only the customers it has seen."""
    buckets = {}
    for port in ports:
        try:
            status, text = request(port, "GET", "/metrics", timeout=10)
        except OSError:
            return None
        if status != 200 or not isinstance(text, str):
            return None
        for match in re.finditer(r'^flashsale_front_lag_seconds_bucket\{le="([^"]+)"\} (\d+)$', text, re.M):
            bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
            buckets[bound] = buckets.get(bound, 0) + int(match.group(2))
    if not buckets or not buckets[float("inf")]:
        return None
    total, bounds = buckets[float("inf")], sorted(buckets)
    def at(q):
        bound = next(b for b in bounds if buckets[b] >= q * total)
        return "<= %g" % (bound * 1000) if bound != float("inf") else "> %g" % (bounds[-2] * 1000)
    return {"orders": total, "p50": at(0.5), "p95": at(0.95)}


def front_order(log_path, sends, winners, k):
    """What the front (haproxy) did to the arrival order. From its request log: read = when haproxy had
    read a customer's request, handed = read + queue + connect time, when the instance could first read it
    (ms resolution: haproxy's Tw and Tc are in ms). An engine serving exactly in hand-over order would score
    `ceiling` = |first K by send AND first K by hand-over| / K; `precisionByHandOver` is the engine's own
    FCFS against the order it was handed (winners among the first K by hand-over). Ties keep send order
    (the ceiling is an upper bound)."""
    send_us = {s[3]: s[0] for s in sends}
    read, handed, server = {}, {}, {}
    with open(log_path, errors="replace") as handle:
        for line in handle:
            match = re.search(r"FRONT (\d+) (-?\d+) (-?\d+) \{crowd-(\d+)\}(?: (\S+))?", line)
            if not match:
                continue
            rx, tw, tc, customer = (int(g) for g in match.groups()[:4])
            if customer in send_us and tw >= 0 and tc >= 0:
                read[customer], handed[customer] = rx, rx + (tw + tc) * 1000
                server[customer] = match.group(5)
    front = {"customersLogged": len(handed)}
    if len(handed) < k:
        return front
    by_send = [c for c in sorted(send_us, key=send_us.get) if c in handed]
    first_send = set(by_send[:k])
    by_read = sorted(by_send, key=lambda c: (read[c], send_us[c]))
    by_handed = sorted(by_send, key=lambda c: (handed[c], send_us[c]))
    front["readOrderCeiling"] = round(len(first_send & set(by_read[:k])) / k, 4)
    front["ceiling"] = round(len(first_send & set(by_handed[:k])) / k, 4)
    front["precisionByHandOver"] = round(len(set(by_handed[:k]) & set(winners)) / k, 4)
    delays = sorted((handed[c] - send_us[c]) / 1000.0 for c in by_send[:k])
    front["firstKSendToHandOverMs"] = quantiles(delays)
    # Who among the first K by send time holds no order: their send rank, the instance haproxy gave them to
    # (its server name), and how long after their send it did (at most 50, earliest first).
    front["firstKLosers"] = [{"rank": rank + 1, "server": server.get(c), "handOverMs": round((handed[c] - send_us[c]) / 1000.0, 1)}
                             for rank, c in enumerate(by_send[:k]) if c not in winners][:50]
    return front


# -------------------------------------------------------------------------------------------- open loop

OPEN_LUA = r"""-- Generated by scripts/crowd.py --open-loop for one run; see its docstring.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } crowd_timespec;
int clock_gettime(int clk_id, crowd_timespec *tp);
]]
local ts = ffi.new("crowd_timespec")
local function now_us()  -- CLOCK_REALTIME, microseconds since the epoch (exact in a double)
  ffi.C.clock_gettime(0, ts)
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end
local function fmt(us) return string.format("%.0f", us) end

local ORIGIN_US = @ORIGIN_US@
local SCHEDULE = "@SCHEDULE@"
local OUT = "@OUT@"
local PATH = "@PATH@"
local BODY = '@BODY@'
local PARK_MS = 3600000
local WARM_END_US = @WARM_END_US@     -- 0: no warm-up
local WARM_PER_THREAD = @WARM_PER_THREAD@

local all_threads = {}
function setup(thread)
  thread:set("tid", #all_threads)
  all_threads[#all_threads + 1] = thread
end

-- thread state
reqs, custs, dues, counts = {}, {}, {}, {}
slots = 0         -- scheduled sends of this thread (one customer each)
claimed = 0       -- slots taken by a free connection in delay()
issued = 0        -- requests produced by request()
unscheduled = 0   -- slots taken by request() without a delay() (a reconnect re-sends without delay())
filler = 0        -- GET /healthz sent because a reconnected connection found no slot left
parked = 0        -- delay() calls that found no slot left
held = 0          -- slots claimed before the origin (connections established in time)
warm_given = 0    -- warm-up requests granted by delay() (one per connection, before WARM_END_US)
warm_pending = 0  -- granted but not yet produced by request()
warmed = 0        -- warm-up requests sent
warm_answers = 0  -- their answers (not counted among the orders' answers)
late = 0          -- slots already due when a connection became free to take them
late_sum_us, late_max_us = 0, 0
answered = 0
first_send_us, last_send_us, last_resp_us = 0, 0, 0
running = false
local sends, resps, filler_req

function init(args)
  for line in io.lines(SCHEDULE .. tid .. ".txt") do
    local c, d, tok = string.match(line, "^(%d+) (%d+) (%S+)$")
    slots = slots + 1
    custs[slots] = c
    dues[slots] = ORIGIN_US + tonumber(d)
    reqs[slots] = wrk.format("POST", PATH, {["Authorization"] = "Bearer " .. tok,
      ["Content-Type"] = "application/json", ["Idempotency-Key"] = "open-" .. c}, BODY)
  end
  filler_req = wrk.format("GET", "/healthz", {}, nil)
  sends = io.open(OUT .. "/sends-" .. tid .. ".txt", "w")
  sends:setvbuf("full", 1048576)
  resps = io.open(OUT .. "/responses-" .. tid .. ".txt", "w")
  resps:setvbuf("full", 1048576)
end

-- Called for a connection once it is connected and after each answer; wrk does not say which connection,
-- so the thread's slots (each connection's phase + k * interval, merged in time order) go to whichever
-- connection is free first.
function delay()
  running = true
  if WARM_END_US > 0 and warm_given < WARM_PER_THREAD and now_us() < WARM_END_US then
    warm_given = warm_given + 1
    warm_pending = warm_pending + 1
    return 0
  end
  if claimed >= slots then
    parked = parked + 1
    return PARK_MS
  end
  claimed = claimed + 1
  local now = now_us()
  if now < ORIGIN_US then held = held + 1 end
  local due = dues[claimed]
  if due <= now then
    late = late + 1
    late_sum_us = late_sum_us + (now - due)
    if now - due > late_max_us then late_max_us = now - due end
    return 0
  end
  return math.ceil((due - now) / 1000)  -- wrk's timers have millisecond resolution
end

function request()
  if not running then return reqs[1] or filler_req end  -- wrk's start-up check calls request() once
  if warm_pending > 0 then
    warm_pending = warm_pending - 1
    warmed = warmed + 1
    return filler_req  -- GET /healthz
  end
  if issued >= claimed then
    if claimed >= slots then
      filler = filler + 1
      return filler_req
    end
    claimed = claimed + 1
    unscheduled = unscheduled + 1
  end
  issued = issued + 1
  local t = now_us()
  if first_send_us == 0 then first_send_us = t end
  last_send_us = t
  sends:write(custs[issued], " ", fmt(t), " ", fmt(dues[issued]), "\n")
  return reqs[issued]
end

function response(status, headers, body)
  local t = now_us()
  if warm_answers < warmed and t < WARM_END_US + 1000000 and status == 200 then
    warm_answers = warm_answers + 1
    return
  end
  answered = answered + 1
  last_resp_us = t
  local code = "-"
  if status >= 400 then code = string.match(body or "", '"code"%s*:%s*"([%w_]+)"') or "-" end
  local key = tostring(status) .. ":" .. code
  counts[key] = (counts[key] or 0) + 1
  local customer = "-"
  if status == 201 then customer = string.match(body or "", '"customerId"%s*:%s*"([^"]*)"') or "?" end
  resps:write(fmt(t), " ", status, " ", code, " ", customer, "\n")
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(all_threads) do
    local c = {}
    for k, v in pairs(t:get("counts") or {}) do c[#c + 1] = string.format("%q:%d", k, v) end
    parts[#parts + 1] = string.format('{"tid":%d,"slots":%d,"claimed":%d,"issued":%d,"unscheduled":%d,'
      .. '"filler":%d,"parked":%d,"held":%d,"warmed":%d,"warmAnswers":%d,"late":%d,"lateSumUs":%s,"lateMaxUs":%s,"answered":%d,'
      .. '"firstSendUs":%s,"lastSendUs":%s,"lastRespUs":%s,"counts":{%s}}',
      t:get("tid"), t:get("slots"), t:get("claimed"), t:get("issued"), t:get("unscheduled"), t:get("filler"),
      t:get("parked"), t:get("held"), t:get("warmed"), t:get("warm_answers"), t:get("late"), fmt(t:get("late_sum_us")), fmt(t:get("late_max_us")),
      t:get("answered"), fmt(t:get("first_send_us")), fmt(t:get("last_send_us")), fmt(t:get("last_resp_us")),
      table.concat(c, ","))
  end
  local e = summary.errors
  io.write(string.format('CROWD_JSON {"durationUs":%s,"requests":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latencyUs":{"min":%s,"mean":%.1f,"p50":%s,"p90":%s,"p95":%s,"p99":%s,"p999":%s,"max":%s},"threads":[%s]}\n',
    fmt(summary.duration), summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    fmt(latency.min), latency.mean, fmt(latency:percentile(50)), fmt(latency:percentile(90)),
    fmt(latency:percentile(95)), fmt(latency:percentile(99)), fmt(latency:percentile(99.9)), fmt(latency.max),
    table.concat(parts, ",")))
end
"""


def sign_customers(first, count, ttl=3600):
    """Tokens for customers first .. first+count-1, as token() signs them but without a json.dumps per token."""
    now = int(time.time())
    key = JWT_SECRET.encode()
    out = []
    for index in range(first, first + count):
        payload = b64url(b'{"exp":%d,"iat":%d,"sub":"%s"}' % (now + ttl, now, customer_name(index).encode()))
        signing = JWT_HEADER + "." + payload
        out.append(signing + "." + b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest()))
    return out


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


def quantiles(values, keys=(0.5, 0.9, 0.95, 0.99)):
    if not values:
        return None
    values = sorted(values)
    out = {"p%g" % (q * 100): round(values[min(len(values) - 1, int(q * len(values)))], 2) for q in keys}
    out["max"], out["n"] = round(values[-1], 2), len(values)
    return out


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


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
        rng = random.Random(args.seed)
        per_thread = args.connections // args.threads
        schedule_prefix = os.path.join(workdir, "schedule-")
        first = 0
        dues_by_customer = {}
        for tid in range(args.threads):
            dues = open_schedule(per_thread, interval_us, duration_us, rng)
            tokens = sign_customers(first, len(dues))
            with open("%s%d.txt" % (schedule_prefix, tid), "w") as handle:
                handle.write("".join("%d %d %s\n" % (first + i, due, tok) for i, (due, tok) in enumerate(zip(dues, tokens))))
            for i, due in enumerate(dues):
                dues_by_customer[first + i] = due
            first += len(dues)
        customers = first
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
        status, body = request(topology.port, "POST", "/admin/sales", bearer=admin, body={
            "id": sale_id, "name": "open loop %s" % order_path, "stock": stock, "startsAt": rfc3339_ms(starts_ms),
            "durationSeconds": sale_seconds, "perCustomerLimit": args.limit})
        if status != 201:
            raise RuntimeError("POST /admin/sales answered %s: %s" % (status, body))
        result["saleId"], result["startsAtMs"], result["saleSeconds"] = sale_id, starts_ms, sale_seconds
        if not wait_until(lambda: request(topology.port, "GET", "/sales/%s" % sale_id, bearer=admin,
                                          timeout=2)[1].get("status") == "open", 15, 0.1):
            raise RuntimeError("the sale did not open within 15 s")

        out_dir = os.path.join(workdir, "wrk")
        os.makedirs(out_dir)
        script = os.path.join(workdir, "open.lua")
        # wrk connects every connection first; the schedule starts --hold-seconds after wrk does.
        origin_us = int((time.time() + args.hold_seconds) * 1e6)
        with open(script, "w") as handle:
            handle.write(OPEN_LUA.replace("@ORIGIN_US@", str(origin_us)).replace("@SCHEDULE@", schedule_prefix)
                         .replace("@OUT@", out_dir).replace("@PATH@", "/sales/%s/orders" % sale_id)
                         .replace("@BODY@", BODY)
                         .replace("@WARM_END_US@", str(origin_us - 1500000 if args.warm else 0))
                         .replace("@WARM_PER_THREAD@", str(args.connections // args.threads)))
        argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % wrk_seconds, "--timeout", "30s",
                "--latency", "-s", script, "http://127.0.0.1:%d" % topology.port]
        result["wrkCommand"] = " ".join(argv)
        if time.time() * 1e6 > origin_us - 0.5e6:
            raise RuntimeError("set-up took too long: the schedule would start before wrk connected")
        if (starts_ms + sale_seconds * 1000) * 1000 < time.time() * 1e6 + wrk_seconds * 1e6 + 1e6:
            raise RuntimeError("set-up took too long: the sale would end before wrk does")

        cpu_before = topology.cpu()
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_out = os.path.join(workdir, "wrk.out")
        with open(wrk_out, "wb") as handle:
            wrk = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=workdir, start_new_session=True)
        wrk.crowd_name = "wrk"
        procs.children.append(wrk)
        # Open fds of every process, sampled while wrk runs (haproxy's limit is the tight one).
        watched = [("wrk", wrk)] + [("instance-%d" % i, p) for i, p in enumerate(topology.instances)]
        if topology.haproxy:
            watched.append(("haproxy", topology.haproxy))
        fd_max = {}
        deadline = time.monotonic() + wrk_seconds + 60
        try:
            while wrk.poll() is None and time.monotonic() < deadline:
                for name, child in watched:
                    count = fd_count(child.pid)
                    if count is not None:
                        fd_max[name] = max(fd_max.get(name, 0), count)
                time.sleep(1.0)
            if wrk.poll() is None:
                warn.append("wrk did not stop by itself within -d + 60 s; killed")
        finally:
            procs.stop(wrk, grace=2)
        usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_after = topology.cpu()
        result["fdMax"] = fd_max
        result["fdHardLimit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        result["wrkExit"] = wrk.returncode
        result["cpuSeconds"] = {name: round(cpu_after[name] - cpu_before[name], 2)
                                for name in cpu_before if cpu_before[name] is not None and cpu_after.get(name) is not None}
        result["cpuSeconds"]["wrk"] = round((usage_after.ru_utime + usage_after.ru_stime)
                                            - (usage_before.ru_utime + usage_before.ru_stime), 2)
        with open(wrk_out, errors="replace") as handle:
            stdout = handle.read()
        result["wrkText"] = [line for line in stdout.splitlines() if not line.startswith("CROWD_JSON ")]
        result.update(parse_wrk_text(stdout))
        summary_line = next((line for line in stdout.splitlines() if line.startswith("CROWD_JSON ")), None)
        if summary_line is None:
            raise RuntimeError("wrk printed no CROWD_JSON line (exit %s):\n%s" % (wrk.returncode, stdout[-2000:]))
        wrk_summary = json.loads(summary_line[len("CROWD_JSON "):])
        result["wrk"] = wrk_summary

        # Close the sale so that the ledger is final (answers still in flight when wrk stopped included).
        status, body = request(topology.port, "POST", "/admin/sales/%s/close" % sale_id, bearer=admin, timeout=10)
        settle = args.settle_seconds
        if status != 200:
            warn.append("the admin close answered %s (%s); waited for the sale's own end instead"
                        % (status, (body or {}).get("code") if isinstance(body, dict) else body))
            settle += max(0.0, starts_ms / 1000.0 + sale_seconds - time.time())
        if not wait_until(lambda: pairs(redis_call(topology.redis_port, "HGETALL", "fs:{%s}:meta" % sale_id))
                          .get("status") == "closed", settle, 0.25):
            warn.append("the sale was not closed %.0f s after the run" % settle)
        analyse_open(result, topology, sale_id, out_dir, wrk_summary, origin_us, dues_by_customer)

        # Server-side evidence: what the instances and haproxy logged (log level error).
        logs = {}
        for name in ["instance-%d" % i for i in range(len(topology.instances))] + (["haproxy"] if topology.haproxy else []):
            try:
                with open(os.path.join(workdir, name + ".log"), errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            logs[name] = {"lines": len(lines), "tail": lines[-5:]}
        result["logs"] = logs

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


def analyse_open(result, topology, sale_id, out_dir, wrk_summary, origin_us, dues_by_customer):
    warn = result["warnings"]
    threads = wrk_summary["threads"]
    by_status = {}
    for thread in threads:
        for key, count in thread["counts"].items():
            by_status[key] = by_status.get(key, 0) + count
    result["answers"] = dict(sorted(by_status.items()))

    def total(prefix):
        return sum(v for k, v in by_status.items() if k.split(":")[0] == prefix)
    for code in ("201", "202", "409", "429", "503"):
        result["count" + code] = total(code)
    result["countOther"] = sum(by_status.values()) - sum(result["count" + c] for c in ("201", "202", "409", "429", "503"))
    errors = wrk_summary["errors"]
    result["socketErrors"] = {k: errors[k] for k in ("connect", "read", "write", "timeout")}
    result["socketErrorsTotal"] = sum(result["socketErrors"].values())

    for name in ("slots", "claimed", "issued", "unscheduled", "filler", "held", "warmed", "warmAnswers", "late", "answered"):
        result[name] = sum(t[name] for t in threads)
    result["lateMaxMs"] = round(max((t["lateMaxUs"] for t in threads), default=0) / 1000.0, 1)
    result["lateMeanMs"] = round(sum(t["lateSumUs"] for t in threads) / result["late"] / 1000.0, 1) if result["late"] else 0
    result["unanswered"] = result["issued"] + result["filler"] - result["answered"]
    if result["held"] < result["connections"]:
        warn.append("only %d of %d connections were established before the schedule started (their first sends "
                    "count as late)" % (result["held"], result["connections"]))
    if result["issued"] < result["slots"]:
        warn.append("%d scheduled sends were never sent before wrk's -d ended" % (result["slots"] - result["issued"]))
    if result["unscheduled"] or result["filler"]:
        warn.append("%d sends without delay() (reconnects), %d /healthz fillers (counted in other)"
                    % (result["unscheduled"], result["filler"]))

    sends = []  # (customer, sent us, due us)
    for thread in threads:
        rows = read_lines(os.path.join(out_dir, "sends-%d.txt" % thread["tid"]))
        if len(rows) != thread["issued"]:
            warn.append("thread %d: sends file has %d lines, %d issued" % (thread["tid"], len(rows), thread["issued"]))
        sends.extend((int(r[0]), int(r[1]), int(r[2])) for r in rows)
    answers = []  # (received us, status, code, customer)
    for thread in threads:
        rows = read_lines(os.path.join(out_dir, "responses-%d.txt" % thread["tid"]))
        if len(rows) != thread["answered"]:
            warn.append("thread %d: responses file has %d lines, %d answers counted" % (thread["tid"], len(rows), thread["answered"]))
        answers.extend((int(r[0]), r[1], r[2], r[3]) for r in rows)

    window_end = origin_us + int(result["durationSeconds"] * 1e6)
    first_send = min((s[1] for s in sends), default=0)
    last_send = max((s[1] for s in sends), default=0)
    last_answer = max((a[0] for a in answers), default=0)
    result["sentPerSecond"] = round(sum(1 for s in sends if s[1] < window_end) / result["durationSeconds"], 1)
    result["answersPerSecond"] = (round(len(answers) / ((last_answer - first_send) / 1e6), 1)
                                  if last_answer > first_send else None)
    result["firstSendAfterOriginMs"] = round((first_send - origin_us) / 1000.0, 1) if first_send else None
    result["lastSendAfterOriginMs"] = round((last_send - origin_us) / 1000.0, 1) if last_send else None
    result["lastAnswerAfterOriginMs"] = round((last_answer - origin_us) / 1000.0, 1) if last_answer else None
    per_second = [0] * int(result["durationSeconds"])
    for a in answers:
        second = (a[0] - origin_us) // 1000000
        if 0 <= second < len(per_second):
            per_second[second] += 1
    result["answersEachSecond"] = per_second
    # Send lag: send time minus the due time of the slot the customer was bound to (wrk's millisecond timers,
    # and which of two slots due the same millisecond fires first, make a few ms normal).
    result["sendLagMs"] = quantiles([(s[1] - s[2]) / 1000.0 for s in sends])
    result["latencyMs"] = {k: round(v / 1000.0, 2) for k, v in wrk_summary["latencyUs"].items()}
    # A 201 names its customer: its latency from the actual send and from the schedule's due time are exact.
    sent_at = {s[0]: s[1] for s in sends}
    from_send, from_due = [], []
    for a in answers:
        if a[1] == "201":
            match = re.fullmatch(r"cust-(\d+)", a[3])
            if match and int(match.group(1)) in sent_at:
                customer = int(match.group(1))
                from_send.append((a[0] - sent_at[customer]) / 1000.0)
                from_due.append((a[0] - origin_us - dues_by_customer[customer]) / 1000.0)
    result["latency201Ms"] = quantiles(from_send)
    # on a connection of its own schedule, an answer slower than the interval makes the next send late
    result["overIntervalAnswers201"] = sum(1 for ms in from_send if ms > result["intervalMs"])
    result["latency201FromDueMs"] = quantiles(from_due)

    # The ledger.
    port = topology.redis_port
    meta = pairs(redis_call(port, "HGETALL", "fs:{%s}:meta" % sale_id))
    sold = int(redis_call(port, "GET", "fs:{%s}:sold" % sale_id) or 0)
    records = [json.loads(v) for v in (redis_call(port, "HVALS", "fs:{%s}:orders" % sale_id, timeout=60) or [])]
    confirmed = [r for r in records if r.get("s") == "confirmed"]
    result["ledger"] = {"status": meta.get("status"), "closedReason": meta.get("closedReason"), "sold": sold,
                        "orders": len(records), "confirmedOrders": len(confirmed),
                        "confirmedUnits": sum(int(r.get("q", 0)) for r in confirmed)}
    result["sold"] = sold
    result["oversold"] = sold > result["stock"] or result["ledger"]["confirmedUnits"] > result["stock"]
    if result["ledger"]["confirmedUnits"] != sold:
        warn.append("ledger: confirmed units %d != sold %d" % (result["ledger"]["confirmedUnits"], sold))
    holders = {}
    for record in confirmed:
        holders[record.get("c", "")] = holders.get(record.get("c", ""), 0) + int(record.get("q", 0))
    over_limit = sum(1 for units in holders.values() if units > result["limit"])
    if over_limit:
        warn.append("%d customers hold more than the limit of %d" % (over_limit, result["limit"]))
    acked = [a[3] for a in answers if a[1] == "201"]
    missing = sorted({c for c in acked if c not in holders})
    result["ackedButMissing"] = len(missing)
    if missing:
        result["ackedButMissingSample"] = missing[:20]
    result["soldEquals201"] = sold == result["count201"]
    if not result["soldEquals201"]:
        # more sold than 201s seen: orders whose answer was still in flight when wrk stopped (or lost)
        warn.append("sold %d != %d answers 201 (%d requests unanswered when wrk stopped)"
                    % (sold, result["count201"], result["unanswered"]))

    # The bar is latency from the intended send time: the 201s' (each names its customer, hence its slot);
    # an answer of another kind cannot be tied to its slot and is counted (and targeted) on its own.
    due = result["latency201FromDueMs"] or {"p95": float("inf"), "p99": float("inf")}
    if result["countOther"] + result["count202"] + result["count409"] + result["count429"] + result["count503"]:
        warn.append("latency from the due time covers the %d answers 201 only" % result["count201"])
    targets = {"p95": (due["p95"], 200.0), "p99": (due["p99"], 400.0)}
    result["targets"] = {name: {"value": value, "limit": limit, "met": value < limit,
                                "overBy": round(value - limit, 2) if value >= limit else 0}
                         for name, (value, limit) in targets.items()}
    result["targets"]["no503"] = {"value": result["count503"], "met": result["count503"] == 0}
    result["targets"]["noOversell"] = {"met": not result["oversold"] and not missing and not over_limit}


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


# --------------------------------------------------------------------------------------------- ceiling

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
    cpu_before = topology.cpu()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60).stdout.decode()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = topology.cpu()
    result = {"mode": "ceiling", "wrkCommand": " ".join(argv), "wrkText": output.splitlines()}
    result.update(parse_wrk_text(output))
    result["cpuSeconds"] = {n: round(cpu_after[n] - cpu_before[n], 2) for n in cpu_before
                            if cpu_before[n] is not None and cpu_after.get(n) is not None}
    result["cpuSeconds"]["wrk"] = round((usage_after.ru_utime + usage_after.ru_stime)
                                        - (usage_before.ru_utime + usage_before.ru_stime), 2)
    print("ceiling: cpu seconds during the 5 s: %s" % json.dumps(result["cpuSeconds"]))
    for line in output.splitlines():
        match = re.match(r"\s+(50|90|99)%\s+([\d.]+)(us|ms|s)", line)
        if match:
            value = float(match.group(2)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(3)]
            result.setdefault("latencyMs", {})["p" + match.group(1)] = round(value, 2)
    return result


# ------------------------------------------------------------------------------------------------ html

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


def tick_step(span, ticks=8):
    """1, 2 or 5 times a power of ten: at most `ticks` steps over span."""
    step = 10.0 ** math.floor(math.log10(max(span, 1e-9) / ticks))
    for factor in (1, 2, 5):
        if span / (step * factor) <= ticks:
            return step * factor
    return step * 10


def svg_chart(x_max, y_max, x_label, y_label, marks, width=1000, height=280):
    """An inline SVG with axes from 0 to x_max and y_max; marks(sx, sy) gives the data's SVG."""
    left, right, top, bottom = 64, 16, 12, 44
    x_max, y_max = max(x_max, 1e-9), max(y_max, 1e-9)

    def sx(x):
        return left + (width - left - right) * x / x_max

    def sy(y):
        return height - bottom - (height - top - bottom) * y / y_max
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
           % (width, height, width, height)]
    step = tick_step(x_max)
    for i in range(int(x_max / step) + 1):
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" '
                   'text-anchor="middle">%g</text>' % (sx(i * step), top, sx(i * step), height - bottom,
                                                      sx(i * step), height - bottom + 15, i * step))
    step = tick_step(y_max, 5)
    for i in range(int(y_max / step) + 1):
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" '
                   'text-anchor="end" dominant-baseline="middle">%g</text>' % (left, sy(i * step), width - right,
                                                                             sy(i * step), left - 5, sy(i * step), i * step))
    out.append('<path d="M%d %d V%d H%d" fill="none" stroke="#555"/>' % (left, top, height - bottom, width - right))
    out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((left + width - right) // 2, height - 8,
                                                                      html.escape(x_label)))
    out.append('<text transform="translate(14 %d) rotate(-90)" text-anchor="middle">%s</text>'
               % ((top + height - bottom) // 2, html.escape(y_label)))
    out.append(marks(sx, sy))
    return "".join(out) + "</svg>"


def html_table(rows, header=None):
    """rows of (label, value...) where every cell is plain text (escaped here)."""
    head = "<tr>%s</tr>" % "".join("<th>%s</th>" % html.escape(str(h)) for h in header) if header else ""
    return "<table>%s%s</table>" % (head, "".join(
        "<tr><th>%s</th>%s</tr>" % (html.escape(str(row[0])), "".join(
            '<td class="n">%s</td>' % html.escape(str(c)) if isinstance(c, (int, float)) else
            "<td>%s</td>" % html.escape(str(c)) for c in row[1:])) for row in rows))


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


# ------------------------------------------------------------------------------------------------ main

def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), None)
    except OSError:
        return None


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build/release/flashsale"))
    parser.add_argument("--instances", type=int, choices=(1, 3), default=1)
    parser.add_argument("--order-path", choices=("engine", "direct"), default="engine")
    parser.add_argument("--compare", action="store_true", help="engine then direct, alternated, --rounds times")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=None, help="1000 (10,000 with --open-loop)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--customers", type=int, default=10000)
    parser.add_argument("--stock", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--hold-seconds", type=float, default=None,
                        help="wrk starts this long before startsAt (3; with --open-loop before the schedule, 5)")
    parser.add_argument("--lead-seconds", type=float, default=3.0, help="extra time between creating the sale and starting wrk")
    parser.add_argument("--crowd-seconds", type=float, default=8.0, help="wrk -d = hold + this")
    parser.add_argument("--open-margin-ms", type=int, default=1, help="first requests leave at startsAt + this")
    parser.add_argument("--sale-seconds", type=int, default=120, help="the sale's durationSeconds")
    parser.add_argument("--settle-seconds", type=int, default=20, help="how long to wait for the sale to close after wrk")
    parser.add_argument("--fleet-order-delay-ms", type=int, default=0,
                        help="with --instances 3: the instances' FLASHSALE_FLEET_ORDER_DELAY_MS (exact arrival order across them)")
    parser.add_argument("--ceiling", action="store_true", help="only wrk on GET /healthz of one instance, 5 s")
    parser.add_argument("--open-loop", action="store_true",
                        help="--connections each sending one order every connections/rate seconds (see the docstring)")
    parser.add_argument("--rate", type=float, default=5000, help="--open-loop: orders/s, all connections together")
    parser.add_argument("--duration", type=float, default=10, help="--open-loop: seconds of the schedule")
    parser.add_argument("--drain-seconds", type=float, default=3, help="--open-loop: wrk -d = hold + duration + this")
    parser.add_argument("--seed", type=int, default=None, help="--open-loop: seed of the connections' phases")
    parser.add_argument("--warm", action="store_true",
                        help="each connection first serves one GET /healthz during the hold (ends 1.5 s before the "
                             "opening or the schedule), so the orders meet connections (and, behind haproxy, the "
                             "front's connections to the instances) that have already served a request")
    parser.add_argument("--no-ceiling", dest="with_ceiling", action="store_false",
                        help="--open-loop: skip wrk's ceiling on /healthz in the same topology afterwards")
    parser.add_argument("--report-dir", default=os.path.join(ROOT, "reports/crowd"))
    parser.add_argument("--keep-workdir", action="store_true")
    parser.add_argument("--html", metavar="PATH", help="also write one self-contained HTML page of the crowd run(s)")
    args = parser.parse_args()
    if args.connections is None:
        args.connections = 10000 if args.open_loop else 1000
    if args.hold_seconds is None:
        # 10,000 connects overflow the server's accept backlog (256); a dropped SYN is retried after 1 s, then 3 s
        args.hold_seconds = 5.0 if args.open_loop else 3.0
    if args.open_loop and (args.ceiling or args.compare):
        parser.error("--open-loop runs its own ceiling afterwards; it does not combine with --ceiling or --compare")
    if args.html and (args.open_loop or args.ceiling):
        parser.error("--html is for the crowd runs, not --open-loop or --ceiling")
    if args.open_loop and (args.rate <= 0 or args.duration <= 0):
        parser.error("--rate and --duration must be positive")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    if args.connections % args.threads:
        parser.error("--connections must be a multiple of --threads")
    args.bin = os.path.abspath(args.bin)  # the children run in their temp dirs
    if not os.access(args.bin, os.X_OK):
        parser.error("no executable at --bin %s" % args.bin)
    for tool in ("wrk", "redis-server") + (("haproxy",) if args.instances > 1 else ()):
        if not shutil.which(tool):
            parser.error("%s is not installed (apt-get install -y %s)" % (tool, "redis-server" if tool == "redis-server" else tool))

    def log(message):
        print(message, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    procs = Processes()
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report = {"startedAt": started, "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "cpuModel": cpu_model(),
                          "platform": platform.platform()}, "bin": args.bin, "runs": []}
    try:
        if args.open_loop:
            try:
                result = run_open_loop(args, procs, log)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # noqa: BLE001 - reported like a failed crowd run
                result = {"mode": "open-loop", "instances": args.instances, "connections": args.connections,
                          "error": str(error)}
            report["runs"].append(result)
            log_open_result(result, log)
            print()
            print_open_table(report["runs"])
            print()
            print("command: " + report["command"])
        elif args.ceiling:
            result = run_ceiling(args, procs, log)
            report["runs"].append(result)
            print("\n".join(result["wrkText"]))
        else:
            paths = ["engine", "direct"] if args.compare else [args.order_path]
            for round_no in range(1, args.rounds + 1):
                for path in paths:
                    try:
                        result = run_crowd(args, path, round_no, procs, log)
                    except KeyboardInterrupt:
                        raise
                    except Exception as error:  # noqa: BLE001 - one failed run is reported, the others go on
                        result = {"path": path, "instances": args.instances, "round": round_no, "error": str(error)}
                    report["runs"].append(result)
                    for warning in result.get("warnings", []):
                        log("  WARNING: " + warning)
                    if result.get("oversold"):
                        log("  OVERSOLD: sold %d of %d" % (result["sold"], result["stock"]))
                    if result.get("ackedButMissing"):
                        log("  ACKED-BUT-MISSING: %d customers got 201 but hold no confirmed order" % result["ackedButMissing"])
                    if "error" not in result:
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
                    else:
                        log("  ERROR: " + result["error"])
            print()
            print_table(report["runs"])
    except KeyboardInterrupt:
        log("crowd: interrupted; stopping everything it started")
        report["interrupted"] = True
    finally:
        procs.stop_all()
        os.makedirs(args.report_dir, exist_ok=True)
        name = "crowd-%s-%s.json" % ("ceiling" if args.ceiling else ("open-" if args.open_loop else "") + "%di" % args.instances,
                                      started)
        path = os.path.join(args.report_dir, name)
        with open(path, "w") as handle:
            json.dump(dict(report, runs=[{k: v for k, v in r.items() if not k.startswith("_")} for r in report["runs"]]),
                      handle, indent=2, sort_keys=True)
        print("crowd: report %s" % os.path.relpath(path, os.getcwd()))
        if args.html:
            write_html(args.html, report)
            print("crowd: html report %s" % os.path.relpath(args.html, os.getcwd()))
    return 1 if report.get("interrupted") or any("error" in r or r.get("oversold") or r.get("ackedButMissing")
                                                  for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
