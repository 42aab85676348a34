#!/usr/bin/env bash
# `make bench`: the package-benchmark microbenchmarks, then the order paths under wrk (healthz = the HTTP
# ceiling, noop = the front alone, engine, direct = the textbook design), alternated, several rounds, with
# CPU per order of the server, redis-server and wrk; the engine's perf profile; the reference crowd on 1 and 3
# instances, the open-loop bar, the ledger over 1, 2 and 3 Redis Cluster masters and the memory a connection costs. Medians and ratios go to BENCHMARKS.md. Bounded: every step has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
OUT=reports/bench
mkdir -p "$OUT"
BIN=.build/release/flashsale
timeout 900 swift build -c release --product flashsale

if [ "${BENCH_SKIP_MICRO:-0}" != 1 ]; then
  echo "bench: microbenchmarks (package-benchmark)"
  (cd Benchmarks && timeout 900 swift package --disable-sandbox benchmark --no-progress) | tr -d '\033' | sed 's/\[[0-9;]*m//g' > "$OUT/micro.txt" 2>&1 || true
fi

# The order paths at wire speed: wrk against healthz / noop / engine / direct, alternated, several rounds.
timeout 2400 .venv/bin/python scripts/throughput.py --bin "$BIN" --rounds "$ROUNDS" --report-dir "$OUT" | tee "$OUT/throughput.txt"
# Where the engine's server CPU goes.
timeout 600 .venv/bin/python scripts/throughput.py --bin "$BIN" --profile 10 --report-dir "$OUT" | tail -3

# The reference crowd measured from outside with wrk (scripts/crowd.py): wrk's ceiling on /healthz first, then 1
# instance and 3 behind haproxy, engine next to direct in the same run; then the open-loop bar.
mkdir -p "$OUT/crowd"
rm -f "$OUT"/crowd/*.json
timeout 120 .venv/bin/python scripts/crowd.py --bin "$BIN" --ceiling --report-dir "$OUT/crowd" | tee "$OUT/crowd-wrk.txt"
for instances in 1 3; do
  timeout 600 .venv/bin/python scripts/crowd.py --bin "$BIN" --instances "$instances" --compare --report-dir "$OUT/crowd" | tee -a "$OUT/crowd-wrk.txt"
done
# 3 instances again with a warm front (each connection loaded the page before the opening, so haproxy's
# connections to the instances exist) and the fleet order delay above that front's lag (exact order across the fleet).
timeout 600 .venv/bin/python scripts/crowd.py --bin "$BIN" --instances 3 --compare --warm --fleet-order-delay-ms "${BENCH_FLEET_DELAY_MS:-100}" \
  --report-dir "$OUT/crowd" | tee -a "$OUT/crowd-wrk.txt"
for rate in ${BENCH_OPEN_RATES:-2000 5000}; do
  timeout 600 .venv/bin/python scripts/crowd.py --bin "$BIN" --open-loop --instances 1 --rate "$rate" --report-dir "$OUT/crowd" | tee -a "$OUT/crowd-wrk.txt"
done

# The ledger over 1, 2 and 3 Redis Cluster masters (and one plain redis-server), side by side.
timeout 1200 .venv/bin/python scripts/cluster_scaling.py --bin "$BIN" --rounds "${BENCH_SCALING_ROUNDS:-2}" --report-dir "$OUT" \
  | tee "$OUT/cluster-scaling.txt"

# What a connection costs in memory (VmRSS of one engine instance, step by step).
timeout 300 .venv/bin/python scripts/conn_memory.py --bin "$BIN" --connections "${BENCH_MEMORY_CONNECTIONS:-5000}" \
  --report "$OUT/conn-memory.json" | tee "$OUT/conn-memory.txt"

python3 scripts/bench_report.py "$OUT" > BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md"
