#!/usr/bin/env bash
# `make demo`: the reference case on this machine: 1,000 units, at most 2 per customer, 10,000 customers
# ordering at the opening instant, driven by wrk through scripts/crowd.py (the engine on one instance; it
# starts and stops its own redis-server and `flashsale serve`). Prints the summary and writes
# reports/demo-<UTC time>.html: what the latency figures mean, units left and answers by outcome over time
# from the opening instant, the winners' latency, sell-out, FCFS precision, the oversell check and CPU seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/flashsale
timeout 900 swift build -c release --product flashsale
source scripts/lib.sh
CROWD=
# crowd.py stops everything it started on SIGTERM; the crowd runs in the background so that this trap can
# pass an interrupt of `make demo` on to it.
trap 'if [ -n "$CROWD" ]; then stop_process "$CROWD"; fi' EXIT
mkdir -p reports
REPORT=reports/demo-$(date -u +%Y%m%dT%H%M%SZ).html
timeout 300 .venv/bin/python scripts/crowd.py --bin "$BIN" --instances 1 --customers "${DEMO_CUSTOMERS:-10000}" \
  --html "$REPORT" &
CROWD=$!
wait "$CROWD"
CROWD=
echo "demo: open $REPORT in a browser"
