# The project's entry points. See README.md and docs/.
SHELL := /bin/bash
CARGO ?= cargo

ROM_TARGET := wasm32-wasip2
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
ROM_DIR := $(TARGET_DIR)/rom
# ROM packages in build order: an outer ROM embeds the inner ROMs listed
# before it (include_bytes!), so each ROM is copied to $(ROM_DIR) before the
# next builds. A package `X-rom` builds the ROM `X.wasm`. A ROM is copied
# only when its bytes changed, so that the ROMs embedding it do not rebuild:
# a second `make roms` with nothing changed compiles nothing.
ROMS := hello-inner hello misbehave probe raft-replica raft-rom bench worker-rom title-worker-rom crawler-rom

# Simulator (`make sim`): seeds START..START+SEEDS-1.
START ?= 1
SEEDS ?= 100
NODES ?= 3
WORKLOAD ?= kv
# `make sim SIM_PROFILE=release` for long runs (see docs/simulation.md).
SIM_PROFILE ?= dev

.PHONY: setup host roms build test sim chaos demo bench bench-raft-core bench-queue bench-runtime bench-raft bench-raft-scale bench-raft-rom-client bench-crawl fmt clippy

setup:
	@./scripts/setup.sh

host: setup
	$(CARGO) build -p ww

roms: setup
	@mkdir -p $(ROM_DIR)
	@for rom in $(ROMS); do \
	  $(CARGO) build --profile guest --target $(ROM_TARGET) -p $$rom || exit 1; \
	  name=$${rom%-rom}; \
	  built=$(TARGET_DIR)/$(ROM_TARGET)/guest/$$name.wasm; \
	  cmp -s $$built $(ROM_DIR)/$$name.wasm || cp $$built $(ROM_DIR)/$$name.wasm || exit 1; \
	done

build: host roms

# Everything CI runs (.ci/run calls this). `cargo test` builds the ww
# binary itself (host/tests makes it), with the same features as the tests:
# a separate `cargo build -p ww` would resolve features differently and
# compile wasmtime and libp2p twice.
test: roms
	$(CARGO) fmt --all -- --check
	./scripts/check-docs.sh
	@if $(MAKE) --no-print-directory roms 2>&1 | grep -E '^ *Compiling'; then \
	  echo "test: a second \`make roms\` with nothing changed compiled the crates above" >&2; exit 1; fi
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test
	$(CARGO) test -p ww-guest --lib
	$(CARGO) test -p raft-replica
	$(MAKE) --no-print-directory sim START=1 SEEDS=1000 NODES=3 WORKLOAD=kv
	$(MAKE) --no-print-directory sim START=1 SEEDS=300 NODES=5 WORKLOAD=kv
	$(MAKE) --no-print-directory sim START=1 SEEDS=500 NODES=3 WORKLOAD=queue
	$(MAKE) --no-print-directory sim START=1 SEEDS=200 NODES=5 WORKLOAD=queue
	$(MAKE) --no-print-directory sim START=1 SEEDS=1000 NODES=3 WORKLOAD=crawl

sim:
	$(CARGO) run --profile $(SIM_PROFILE) -q -p ww-tests --bin sim -- \
	  --start $(START) --seeds $(SEEDS) --nodes $(NODES) --workload $(WORKLOAD)

# The chaos harness on real hosts (docs/chaos.md): `make chaos DURATION=S
# SEED=N` (SEED defaults to the clock; the run prints it). `make test` runs
# a ~35 s version (tests/tests/chaos).
CHAOS_DURATION = $(if $(filter command line environment,$(origin DURATION)),$(DURATION),120)
SEED ?=

chaos: roms
	CHAOS_DURATION_S=$(CHAOS_DURATION) $(if $(SEED),CHAOS_SEED=$(SEED)) \
	  $(CARGO) test -q -p ww-tests --test chaos -- --exact run --nocapture

demo: build
	$(CARGO) build -q -p crawl-site
	./scripts/demo.sh

# `make bench WORKLOAD=write|read|queue [CLIENTS=N] [DURATION=S] [OUT=FILE.json]`
# runs one Raft group run (bench-raft); `make bench WORKLOAD=crawl
# [WORKERS="1 2 4 8"] [PAGES=N]` runs the crawler (bench-crawl); plain
# `make bench` runs everything.
# (WORKLOAD also names the simulator's workload, default kv: only a
# WORKLOAD given on the command line or in the environment picks a run.)
RAFT_RUN := $(filter command line environment,$(origin WORKLOAD))
CLIENTS ?= 16
DURATION ?= 10
RUNS ?= 2
WINDOW ?=
OUT ?=

WORKERS ?= 1 2 4 8
PAGES ?= 10000

ifneq ($(RAFT_RUN),)
ifeq ($(WORKLOAD),crawl)
bench: bench-crawl
else
bench: bench-raft
endif
else
bench: build bench-raft-core bench-queue bench-runtime bench-raft bench-raft-scale bench-raft-rom-client bench-crawl
endif

bench-raft-core:
	$(CARGO) bench -q -p raft-core --bench driver | ./scripts/bench-record.sh raft-core

bench-queue:
	$(CARGO) bench -q -p queue --bench apply | ./scripts/bench-record.sh queue-apply
	$(CARGO) bench -q -p queue --bench snapshot_stall | ./scripts/bench-record.sh snapshot-stall

# Real `ww start` hosts (release build) on loopback running target/rom/bench.wasm
# (tests/benches/runtime.rs). A group that fails records nothing.
bench-runtime: roms
	$(CARGO) build --release -q -p ww
	@for group in spawn:runtime-spawn rpc:runtime-rpc channels:channels; do \
	  out=$$($(CARGO) bench -q -p ww-tests --bench runtime -- $${group%%:*}) || exit 1; \
	  printf '%s\n' "$$out" | ./scripts/bench-record.sh $${group#*:} || exit 1; \
	done

# A Raft group on real `ww start` hosts (release build) on loopback, driven
# by the native client (tests/benches/raft.rs; docs/benchmarks.md). With
# WORKLOAD: one run, its JSON on stdout and in OUT (default
# target/bench/<workload>-<clients>.json). Without: write and read at 1, 16
# and 128 clients and the queue workload, RUNS runs each, recorded.
bench-raft: roms
	$(CARGO) build --release -q -p ww
ifneq ($(RAFT_RUN),)
	$(CARGO) bench -q -p ww-tests --bench raft -- --workload $(WORKLOAD) --clients $(CLIENTS) \
	  --duration $(DURATION) $(if $(WINDOW),--window $(WINDOW)) $(if $(OUT),--out $(abspath $(OUT)))
else
	out=$$($(CARGO) bench -q -p ww-tests --bench raft -- matrix --runs $(RUNS) --duration $(DURATION)) || exit 1; \
	printf '%s\n' "$$out" | ./scripts/bench-record.sh raft-group
endif

# A `ww run` ROM client relayed through host 0 against direct routes
# (tests/benches/raft/rom_client.rs); recorded in docs/benchmarks.md.
bench-raft-rom-client: roms
	$(CARGO) build --release -q -p ww
	out=$$($(CARGO) bench -q -p ww-tests --bench raft -- rom-client --clients $(CLIENTS) \
	  --duration $(DURATION) --runs $(RUNS)) || exit 1; \
	printf '%s\n' "$$out" | ./scripts/bench-record.sh raft-rom-client

# Scale curves (tests/benches/raft/scale.rs): 1, 2, 4, 8 groups on four
# hosts, and one group of 3, 5, 9 replicas; recorded in docs/benchmarks.md.
bench-raft-scale: roms
	$(CARGO) build --release -q -p ww
	out=$$($(CARGO) bench -q -p ww-tests --bench raft -- scale --duration $(DURATION) \
	  $(if $(GROUPS),--groups "$(GROUPS)") $(if $(REPLICAS),--replicas "$(REPLICAS)")) || exit 1; \
	printf '%s\n' "$$out" | ./scripts/bench-record.sh raft-scale

# The crawler on real hosts (release build) crawling the local site with
# politeness lifted, for each worker count in WORKERS (tests/benches/crawl.rs).
bench-crawl: roms
	$(CARGO) build --release -q -p ww
	out=$$($(CARGO) bench -q -p ww-tests --bench crawl -- --workers "$(WORKERS)" --pages $(PAGES)) || exit 1; \
	printf '%s\n' "$$out" | ./scripts/bench-record.sh crawl

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(ROM_TARGET) $(addprefix -p ,$(ROMS)) -- -D warnings
