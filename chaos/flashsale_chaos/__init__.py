"""The FlashSale chaos suite as a package; `chaos/chaos.py` is its command line.

  clients     RESP client, HTTP requests (HTTPS with --tls), JWTs, bounded waits
  processes   a child process with a log file; the TCP proxy in front of Redis
  topology    one scenario's processes: Redis (+ replicas, Sentinels), MongoDB wire server, instances, haproxy;
              the run's throwaway CA and certificate for --tls
  workload    the customers: one intent each, retried; the liveness sweep of fresh customers after healing
  faults      what each scenario does to the topology (inject, heal)
  scenarios   the scenarios: fault, heal, topology, workload, and the probe that shows the fault took effect
  checker     quiescence and the checks of a history against the ledger and MongoDB, liveness included
  runner      one scenario from start to verdict
  report      the table, the JSON report and the kept histories and logs

The constants every part shares live here.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JWT_SECRET = "chaos-secret-0123456789abcdef-0123456789"
LEASE_TTL_SECONDS = 2.0  # EngineConfiguration's default lease TTL
