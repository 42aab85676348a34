#!/usr/bin/env bash
# `make bench`: the package-benchmark microbenchmarks, then the same server with three order paths
# (engine, direct = the textbook design, noop = the HTTP ceiling) under the same load generator,
# alternating, several rounds; medians and ratios go to BENCHMARKS.md. Bounded: every step has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-8}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
OUT=reports/bench
mkdir -p "$OUT"
BIN=.build/release/flashsale
timeout 900 swift build -c release --product flashsale

if [ "${BENCH_SKIP_MICRO:-0}" != 1 ]; then
  echo "bench: microbenchmarks (package-benchmark)"
  (cd Benchmarks && timeout 900 swift package --disable-sandbox benchmark --no-progress) | tr -d '\033' | sed 's/\[[0-9;]*m//g' > "$OUT/micro.txt" 2>&1 || true
fi

source scripts/lib.sh
WORK=$(mktemp -d)
REDIS_PORT=$(free_port)
trap 'stop_servers; rm -rf "$WORK"' EXIT
start_test_redis "$WORK"
export FLASHSALE_JWT_SECRET=bench-secret-0123456789abcdef
FLASHSALE_DATA_KEY=$(head -c 32 /dev/urandom | base64)
export FLASHSALE_DATA_KEY
export FLASHSALE_RATE_LIMIT_CUSTOMER=0 FLASHSALE_RATE_LIMIT_ADDRESS=0 FLASHSALE_LOG_LEVEL=error

for round in $(seq 1 "$ROUNDS"); do
  for path in engine direct noop; do
    HTTP_PORT=$(free_port)
    "$BIN" serve --port "$HTTP_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" --order-path "$path" --instance-id "bench-$path" 2>"$WORK/server.log" &
    SERVER=$!
    wait_ready "http://127.0.0.1:$HTTP_PORT/readyz"
    echo "bench: round $round, order path $path"
    CHECK=()
    [ "$path" = noop ] && CHECK=(--skip-ledger-check)
    timeout 120 "$BIN" load --url "http://127.0.0.1:$HTTP_PORT" --mode closed-loop --connections "$CONNECTIONS" \
      --duration-seconds "$SECONDS_PER_RUN" --max-seconds 60 --report "$OUT/$path-$round" "${CHECK[@]}" | sed 's/^/  /'
    stop_process "$SERVER"
    SERVER=
  done
done

# The reference case on each real order path: 10,000 customers at the opening instant, 1,000 units, limit 2.
for path in engine direct; do
  HTTP_PORT=$(free_port)
  "$BIN" serve --port "$HTTP_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" --order-path "$path" --instance-id "crowd-$path" 2>"$WORK/server.log" &
  SERVER=$!
  wait_ready "http://127.0.0.1:$HTTP_PORT/readyz"
  echo "bench: flash crowd, order path $path"
  timeout 200 "$BIN" load --url "http://127.0.0.1:$HTTP_PORT" --mode flash-crowd --customers "${BENCH_CROWD:-10000}" \
    --stock 1000 --limit 2 --starts-in-seconds 5 --max-seconds 120 --report "$OUT/crowd-$path" | sed 's/^/  /'
  stop_process "$SERVER"
  SERVER=
done

# The reference crowd measured from outside with wrk (scripts/crowd.py): 1 instance, then 3 behind haproxy,
# engine next to direct in the same run; wrk's own ceiling on /healthz first.
stop_servers
timeout 120 .venv/bin/python scripts/crowd.py --bin "$BIN" --ceiling | tee "$OUT/crowd-wrk.txt"
for instances in 1 3; do
  timeout 400 .venv/bin/python scripts/crowd.py --bin "$BIN" --instances "$instances" --compare | tee -a "$OUT/crowd-wrk.txt"
done

python3 scripts/bench_report.py "$OUT" "$ROUNDS" "$SECONDS_PER_RUN" "$CONNECTIONS" > BENCHMARKS.md
{
  echo
  echo "## The reference crowd, measured with wrk (scripts/crowd.py)"
  echo
  echo '```'
  grep -E "^ *(path|engine|direct) |ceiling|healthz" "$OUT/crowd-wrk.txt" || true
  echo '```'
} >> BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md"
