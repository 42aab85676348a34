#!/usr/bin/env bash
# `make demo`: the reference case on this machine: 1,000 units, at most 2 per customer, 10,000 virtual
# customers ordering at the opening instant. Prints the summary and where the HTML report is, then the same
# crowd driven by wrk (scripts/crowd.py), whose rate is not limited by the generator.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/flashsale
timeout 900 swift build -c release --product flashsale
source scripts/lib.sh
WORK=$(mktemp -d)
REDIS_PORT=$(free_port)
HTTP_PORT=$(free_port)
trap 'stop_servers; rm -rf "$WORK"' EXIT
start_test_redis "$WORK"
export FLASHSALE_JWT_SECRET=demo-secret-0123456789abcdef
FLASHSALE_DATA_KEY=$(head -c 32 /dev/urandom | base64)
export FLASHSALE_DATA_KEY
export FLASHSALE_RATE_LIMIT_CUSTOMER=20 FLASHSALE_RATE_LIMIT_ADDRESS=0 FLASHSALE_LOG_LEVEL=error
"$BIN" serve --port "$HTTP_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" --instance-id demo 2>"$WORK/server.log" &
SERVER=$!
wait_ready "http://127.0.0.1:$HTTP_PORT/readyz"
mkdir -p reports
REPORT=reports/demo-$(date -u +%Y%m%dT%H%M%SZ)
timeout 300 "$BIN" load --url "http://127.0.0.1:$HTTP_PORT" --mode flash-crowd --customers "${DEMO_CUSTOMERS:-10000}" \
  --stock 1000 --limit 2 --starts-in-seconds 5 --max-seconds 120 --report "$REPORT"
echo "demo: open $REPORT.html in a browser"
stop_servers
SERVER=
# The same crowd measured from outside with wrk (a generator that outruns the server; see scripts/crowd.py):
# the engine on one instance, every customer's answer, sell-out time, latency and FCFS precision.
timeout 300 .venv/bin/python scripts/crowd.py --bin "$BIN" --instances 1 --customers "${DEMO_CUSTOMERS:-10000}"
