"""The FlashSale chaos suite as a package; `chaos/chaos.py` is its command line.

  clients     RESP client, HTTP requests (HTTPS with --tls), JWTs, bounded waits
  processes   a child process with a log file; the TCP proxy in front of Redis (cut, slowed, or cut but for one
              process)
  balancer    the haproxy configuration (HTTP, or TCP for an L4 balancer), shared with scripts/flashsale_crowd
  topology    one scenario's processes: Redis (+ replicas, Sentinels), MongoDB wire server, instances, haproxy;
              the run's throwaway CA and certificate for --tls
  workload    the customers: one intent each, retried; the liveness sweep of fresh customers after healing
  faults      what each scenario does to the topology (inject, heal)
  scenarios   the scenarios: fault, heal, topology, workload, and the probe that shows the fault took effect
  checker     quiescence and the checks of a history against the ledger and MongoDB, liveness included
  availability  the share of first attempts and of intents answered definitively while the fault lasted
  runner      one scenario from start to verdict
  report      the table, the soak table (--repeat), the JSON report and the kept histories and logs

The constants every part shares live here.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JWT_SECRET = "chaos-secret-0123456789abcdef-0123456789"
LEASE_TTL_SECONDS = 2.0  # EngineConfiguration's default lease TTL
