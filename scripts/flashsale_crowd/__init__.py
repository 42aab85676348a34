"""The flash-crowd measurement as a package; `scripts/crowd.py` is its command line (see its docstring for
the reference case and how to run it).

  clients        chaos's RESP client with the crowd's 5 s default timeout
  tokens         the crowd's HS256 tokens (a secret of its own per run, given to the instances it starts)
  processes      the children it starts (chaos's Process, environment exactly as given), their CPU and fds
  topology       redis-server (AOF always), N `flashsale serve` instances, haproxy in front of 3
  sale           the sale: created through the admin API, its ledger read from Redis
  workload       the wrk Lua scripts (crowd.lua, open.lua beside this file), the open loop's schedule, wrk's
                 output and the CPU it and the topology used
  closed_loop    one crowd run: topology, customers, sale, wrk at the opening instant, the settled ledger
  open_loop      the open-loop row: schedule, sale, wrk, the closed ledger, the ceiling afterwards
  figures        quantiles, answers by status, the per-thread rows the Lua scripts wrote
  measures       a crowd run's figures: answers, ledger, winners, FCFS precision, latencies
  front          what haproxy did to the arrival order (hand-over order, lag to the engine)
  open_measures  the open loop's figures, ledger checks and latency targets
  ceiling        wrk's own ceiling on GET /healthz; the quiet wait before it
  report         the text tables, the per-run lines, the machine, the JSON report
  charts         the inline SVG charts and HTML tables
  page           the self-contained HTML page (`--html`)

Shared with the chaos suite (`chaos/flashsale_chaos`, which crowd.py puts on sys.path): its clients (RESP
client, requests, free port, bounded waits, `pairs`, `b64url`), its Process and its haproxy configuration
writer (balancer). The crowd keeps its own JWT secret, Redis timeout and the instances' environment.

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

The constants every part shares live here.
"""

import base64
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The instances the crowd starts accept tokens signed with this secret only (tokens.py signs with it).
JWT_SECRET = "crowd-secret-0123456789abcdef-" + base64.b16encode(os.urandom(4)).decode()
BODY = '{"quantity":1,"delivery":{"name":"A B","phone":"+15550100","address":"1 Main St"}}'
REDIS_TIMEOUT_SECONDS = 5.0  # the crowd's Redis calls (chaos's clients default to 3 s)
