#!/usr/bin/env bash
# The OpenAPI document checked against the live server by schemathesis, with a bounded number of
# generated cases per operation: no 5xx, and every status, content type and body as documented.
# Starts its own redis-server and `flashsale serve` on free loopback ports and stops both at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${FLASHSALE_BIN:-.build/debug/flashsale}
EXAMPLES=${CONFORMANCE_MAX_EXAMPLES:-20}
source scripts/lib.sh
WORK=$(mktemp -d)
REDIS_PORT=$(free_port)
HTTP_PORT=$(free_port)
trap 'stop_servers; rm -rf "$WORK"' EXIT
start_test_redis "$WORK"

export FLASHSALE_JWT_SECRET=conformance-secret-0123456789-0123456789 FLASHSALE_SHUTDOWN_DELAY_SECONDS=0
FLASHSALE_DATA_KEY=$(head -c 32 /dev/urandom | base64)
export FLASHSALE_DATA_KEY
export FLASHSALE_RATE_LIMIT_CUSTOMER=0 FLASHSALE_RATE_LIMIT_ADDRESS=0 FLASHSALE_RATE_LIMIT_UNVERIFIED=0 FLASHSALE_LOG_LEVEL=error
"$BIN" serve --port "$HTTP_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" --instance-id conformance 2>"$WORK/server.log" &
SERVER=$!
wait_ready "http://127.0.0.1:$HTTP_PORT/readyz" || { echo "conformance: server not ready"; cat "$WORK/server.log"; exit 1; }

ADMIN=$("$BIN" token --sub conformance-admin --admin --ttl-seconds 3600)
STARTS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -fs -o /dev/null -X POST "http://127.0.0.1:$HTTP_PORT/admin/sales" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":\"demo\",\"name\":\"Conformance\",\"stock\":1000000,\"startsAt\":\"$STARTS\",\"durationSeconds\":3600,\"perCustomerLimit\":100}"

# The live WebSocket route is exercised by the Swift tests (schemathesis speaks plain HTTP).
timeout 900 .venv/bin/schemathesis run "http://127.0.0.1:$HTTP_PORT/openapi.yaml" \
  --header "Authorization: Bearer $ADMIN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path /sales/{saleId}/live \
  --max-examples "$EXAMPLES" --seed 20261124 --request-timeout 10 --no-color
echo "conformance: the OpenAPI document matches the live server"

# One instance holds LIVE_SOCKETS open WebSockets and pushes a stock change to every one of them. A sale of
# its own: schemathesis may have closed or sold out the first one (it calls the admin routes too).
STARTS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -fs -o /dev/null -X POST "http://127.0.0.1:$HTTP_PORT/admin/sales" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":\"live-check\",\"name\":\"Live sockets\",\"stock\":1000,\"startsAt\":\"$STARTS\",\"durationSeconds\":3600,\"perCustomerLimit\":2}"
CUSTOMER=$("$BIN" token --sub live-check --ttl-seconds 3600)
timeout 300 .venv/bin/python scripts/live_sockets.py "http://127.0.0.1:$HTTP_PORT" live-check "$CUSTOMER" "$ADMIN" "${LIVE_SOCKETS:-10000}"
