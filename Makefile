# FlashSale: `make run` (the service with a local Redis) and `make test` (the whole suite).
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: bootstrap build release run test clean

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	swift build

release: bootstrap
	swift build -c release --product flashsale

run: release
	@scripts/run-local.sh

test: bootstrap
	swift build --build-tests
	swift test --skip-build --no-parallel
	scripts/api-conformance.sh
	timeout 300 scripts/tls-check.sh
	timeout 400 .venv/bin/python scripts/browser_test.py --bin .build/debug/flashsale
	timeout 600 .venv/bin/python chaos/chaos.py --bin .build/debug/flashsale --quick --scenarios kill-instance,kill-head-holder,pause-instance,kill-redis,rolling-upgrade
	timeout 300 .venv/bin/python chaos/chaos.py --bin .build/debug/flashsale --quick --tls --scenarios pause-instance
	timeout 600 scripts/k8s-check.sh
	timeout 420 .venv/bin/python scripts/redis_ha_check.py --bin .build/debug/flashsale
	timeout 300 .venv/bin/python scripts/redis_cluster_check.py --bin .build/debug/flashsale
	timeout 120 .venv/bin/python scripts/mongo_init_check.py
	timeout 2400 scripts/image-test.sh

clean:
	rm -rf .build .local

.PHONY: image
# The container image (podman, offline): the release build staged into a minimal root file system (Containerfile).
image: release
	scripts/image.sh

.PHONY: bench-micro bench demo chaos fuzz soak
# Every chaos scenario against a release build (bounded: each scenario stops by itself; the whole run < 30 min),
# then the fuzz targets (60 s each) and the long run of the seeded liveness test (24 rounds of faults;
# FLASHSALE_LIVENESS_SEED replays one).
chaos: release
	timeout 1800 .venv/bin/python chaos/chaos.py --bin .build/release/flashsale
	timeout 2400 scripts/fuzz.sh
	swift build --build-tests
	FLASHSALE_LIVENESS_ROUNDS=24 timeout 600 swift test --skip-build --filter LivenessTests

# Every chaos scenario N times (N=10), round by round, with min / median / max of every figure per scenario
# (bounded: each scenario stops by itself; at most 4 hours in all).
N ?= 10
soak: release
	timeout 14400 .venv/bin/python chaos/chaos.py --bin .build/release/flashsale --repeat $(N) $(SOAK_FLAGS)

# libFuzzer with AddressSanitizer on the token verifier and the body decoder, FUZZ_SECONDS (60) each.
fuzz: bootstrap
	timeout 2400 scripts/fuzz.sh

bench-micro: bootstrap
	cd Benchmarks && swift package --disable-sandbox benchmark

# Microbenchmarks, then the order paths under wrk, the reference crowd and the open-loop bar; writes
# BENCHMARKS.md (bounded: every step has a timeout; about 60 min on 2 cores).
bench: bootstrap
	scripts/bench.sh

# The reference case: 1,000 units, limit 2, 10,000 virtual customers; prints the summary and the report.
demo: bootstrap
	scripts/demo.sh
