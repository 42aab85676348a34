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
trap stop_redis EXIT

BINARY=.build/release/flashsale
cat <<MSG

FlashSale is starting on http://127.0.0.1:$FLASHSALE_PORT (local Redis on 127.0.0.1:$REDIS_PORT, data in $DATA)
  curl -i http://127.0.0.1:$FLASHSALE_PORT/healthz
  curl -i http://127.0.0.1:$FLASHSALE_PORT/readyz
Stop with Ctrl-C.

MSG
"$BINARY" serve
