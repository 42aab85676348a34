#!/usr/bin/env bash
# `make run`: a project-local Redis (data in .local/, loopback only) and the service in the foreground.
# Ctrl-C stops the service; the local Redis is stopped with it.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${FLASHSALE_LOCAL_REDIS_PORT:-6390}
export FLASHSALE_PORT=${FLASHSALE_PORT:-8080}
export FLASHSALE_REDIS_URL=${FLASHSALE_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
DATA=.local/redis
mkdir -p "$DATA"

if [ -z "${FLASHSALE_JWT_SECRET:-}" ]; then
  if [ ! -s .local/jwt-secret ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .local/jwt-secret
    echo "run: generated a local JWT secret in .local/jwt-secret"
  fi
  FLASHSALE_JWT_SECRET=$(cat .local/jwt-secret)
  export FLASHSALE_JWT_SECRET
  SECRET_HINT='FLASHSALE_JWT_SECRET=$(cat .local/jwt-secret) '
fi

if [ -z "${FLASHSALE_DATA_KEY:-}" ]; then
  if [ ! -s .local/data-key ]; then
    (umask 077; head -c 32 /dev/urandom | base64 > .local/data-key)
    echo "run: generated a local data key in .local/data-key (it seals delivery details; keep it with the data)"
  else
    echo "run: using the local data key in .local/data-key"
  fi
  FLASHSALE_DATA_KEY=$(cat .local/data-key)
  export FLASHSALE_DATA_KEY
fi

if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
    --dir "$PWD/$DATA" --appendonly yes --appendfsync always --save "" \
    --daemonize yes --pidfile "$PWD/$DATA/redis.pid" --logfile "$PWD/$DATA/redis.log"
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  started_redis=1
fi
stop_redis() {
  if [ "${started_redis:-0}" = 1 ]; then redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true; fi
}

BINARY=${FLASHSALE_BIN:-.build/release/flashsale}
# No load balancer to give notice to on this machine: Ctrl-C stops at once.
export FLASHSALE_SHUTDOWN_DELAY_SECONDS=${FLASHSALE_SHUTDOWN_DELAY_SECONDS:-0}
"$BINARY" serve &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; stop_redis' EXIT INT TERM
for _ in $(seq 1 150); do
  curl -fs "http://127.0.0.1:$FLASHSALE_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

# The demo sale: the reference case, 1,000 phones, at most 2 per customer, opening a minute from now.
ADMIN=$("$BINARY" token --sub demo-admin --admin --ttl-seconds 86400)
CUSTOMER=$("$BINARY" token --sub demo-customer --ttl-seconds 86400)
STARTS=$(date -u -d "+60 seconds" +%Y-%m-%dT%H:%M:%SZ)
DEMO_ID="demo-$(date -u +%H%M%S)"
curl -fs -o /dev/null -X POST "http://127.0.0.1:$FLASHSALE_PORT/admin/sales" \
  -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"id\":\"$DEMO_ID\",\"name\":\"Phones (demo)\",\"stock\":1000,\"startsAt\":\"$STARTS\",\"durationSeconds\":3600,\"perCustomerLimit\":2}" \
  || echo "run: could not create the demo sale"

cat <<MSG

FlashSale is running on http://127.0.0.1:$FLASHSALE_PORT (local Redis on 127.0.0.1:$REDIS_PORT, data in $DATA)
Demo sale "$DEMO_ID": 1,000 units, at most 2 per customer, opens at $STARTS.

  Sale page (signed in as demo-customer):
              http://127.0.0.1:$FLASHSALE_PORT/?sale=$DEMO_ID#token=$CUSTOMER
  Console (admin):
              http://127.0.0.1:$FLASHSALE_PORT/admin/#token=$ADMIN
  Health:     curl -i http://127.0.0.1:$FLASHSALE_PORT/readyz
  Stock:      curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$FLASHSALE_PORT/sales/$DEMO_ID/stock
  Order:      curl -s -X POST -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
                -d '{"quantity":1,"delivery":{"name":"Ada","phone":"5550100","address":"1 Main St"}}' \\
                http://127.0.0.1:$FLASHSALE_PORT/sales/$DEMO_ID/orders

  export TOKEN=$CUSTOMER
  Admin token (shards, rebalance): $ADMIN
  Another customer's token: ${SECRET_HINT:-}$BINARY token --sub alice

Stop with Ctrl-C.
MSG
wait $SERVER
