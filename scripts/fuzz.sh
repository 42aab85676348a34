#!/usr/bin/env bash
# libFuzzer runs of the parsers of untrusted input (Fuzz/): the bearer-token verifier and the request-body
# decoder, each for FUZZ_SECONDS (default 60) with AddressSanitizer, from the seeds in Fuzz/Corpus/. A crash,
# a failed check or a hang (5 s per input) fails the run and leaves the input under reports/fuzz/.
# Build: the targets exist only with FLASHSALE_FUZZ=1 (see Package.swift), in their own .build-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
REPORT=reports/fuzz
mkdir -p "$REPORT"
FLAGS=(-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing)

for target in FuzzTokens:tokens FuzzBodies:bodies; do
  name=${target%%:*}
  corpus=${target##*:}
  FLASHSALE_FUZZ=1 swift build --scratch-path .build-fuzz --product "$name" "${FLAGS[@]}" 2>&1 | grep -E "error:|Build complete" || true
  binary=.build-fuzz/debug/$name
  [ -x "$binary" ] || { echo "fuzz: $name did not build"; exit 1; }
  work=$(mktemp -d)
  log=$REPORT/$name.log
  # New inputs go to the first (scratch) corpus; the committed seeds are only read.
  if ! LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan-suppressions.txt:print_suppressions=0" timeout $((SECONDS_PER_TARGET + 60)) "$binary" -max_total_time="$SECONDS_PER_TARGET" -timeout=5 -rss_limit_mb=2048 \
      -artifact_prefix="$REPORT/$name-" -print_final_stats=1 "$work" "Fuzz/Corpus/$corpus" >"$log" 2>&1; then
    echo "fuzz: $name FAILED (log: $log)"
    grep -E "ERROR|Fatal|precondition|Test unit written" "$log" | head -20
    rm -rf "$work"
    exit 1
  fi
  runs=$(grep -E "^stat::number_of_executed_units" "$log" | awk '{print $2}')
  coverage=$(grep -oE "cov: [0-9]+" "$log" | tail -1)
  echo "fuzz: $name passed: ${runs:-?} inputs in ${SECONDS_PER_TARGET} s, $coverage, corpus $(ls "$work" | wc -l) new inputs"
  rm -rf "$work"
done
