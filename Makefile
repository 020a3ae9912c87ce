# The commands README.md promises. Everything installs into .venv from pyproject.toml, pinned by
# requirements.lock (every direct and transitive dependency of every extra, made by `make lock`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
STORE ?= store
HOST ?= 127.0.0.1
PORT ?= 8000
# e.g. `make loadtest LOADTEST_ARGS="--ramp --benchmarks BENCHMARKS.md"` (python -m loadtest.run -h)
LOADTEST_ARGS ?=

.PHONY: install lock lock-peers peers run demo test test-fast lint openapi loadtest soak bench bench-logging clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	# The lock is a constraints file: pip installs exactly its versions, torch as the CPU build on this disk.
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[serve,train,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Regenerate the lock on purpose, from pyproject.toml: existing pins are kept unless they no longer fit;
# `make lock LOCK_FLAGS=--upgrade` (or `--upgrade-package NAME`) moves them. pip-compile runs in a venv
# of its own, so a lock that cannot install still regenerates.
LOCK_VENV := .lock-venv
LOCK_FLAGS ?=
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "$$(grep '^pip-tools==' $(LOCK) || echo pip-tools)"
	$(LOCK_VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra serve --extra train --extra dev $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml

# The peers extra (LitServe, Ray Serve: loadtest/peers) has a lock of its own, compiled with requirements.lock
# as constraints so every package both need keeps the main pin; `make run` and `make test` never install it.
PEERS_LOCK := requirements-peers.lock
lock-peers:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet "$$(grep '^pip-tools==' $(LOCK) || echo pip-tools)"
	$(LOCK_VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra peers --constraint $(LOCK) $(LOCK_FLAGS) --output-file $(PEERS_LOCK) pyproject.toml

peers: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -r $(PEERS_LOCK)

# The served demo's world: v2.1, where its fusion actor beats the best constant action on session return
# (README, "What the demo policy optimises"); DEMO_WORLD=v1 gives the request-level demo the benchmarks use.
DEMO_WORLD ?= v2.1

$(STORE)/demo/ACTIVE: | $(STAMP)
	$(BIN)/cascade demo --world $(DEMO_WORLD) --store $(STORE) --example $(STORE)/example-rank.json

demo: $(STORE)/demo/ACTIVE

run: $(STAMP) $(STORE)/demo/ACTIVE
	@echo
	@echo "Serving on http://$(HOST):$(PORT). In another shell:"
	@echo "  curl -s -H 'content-type: application/json' --data @$(STORE)/example-rank.json http://$(HOST):$(PORT)/v1/rank"
	@echo "  curl -s -H 'content-type: application/json' --data @$(STORE)/example-rank-by-id.json http://$(HOST):$(PORT)/v1/rank"
	@echo
	$(BIN)/cascade serve --store $(STORE) --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint
	# pytest exit 5 means nothing was collected: a suite that vanished fails, it does not pass.
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

# The unit tests alone: no e2e test (those start real processes: uvicorn, pip in a fresh venv, the loop).
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -m "not e2e"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

openapi: $(STAMP)
	$(BIN)/cascade openapi --out openapi.yaml

loadtest: $(STAMP) $(STORE)/demo/ACTIVE
	$(BIN)/python -m loadtest.run --store $(STORE) $(LOADTEST_ARGS)

# Ten minutes at a steady rate against a real server: RSS growth, failures, Redis memory (RELIABILITY.md).
soak: $(STAMP) $(STORE)/demo/ACTIVE
	$(BIN)/python -m loadtest.soak --store $(STORE)

# The benchmark harness: trains its own policy, runs every server on 127.0.0.1 (the peers too), writes
# BENCHMARKS.md + .png.
bench: $(STAMP) peers
	$(BIN)/cascade bench --peers

# The cost of decision logging: logging-on and logging-off servers pinned to core 0, Redis and wrk on core 1
# (loadtest/bench/pinned.py). An A/A run first shows the harness's own bias; then both servers loaded at the
# same time (the verdict is the CPU per request); then alternating (ABBA) rounds, one server at a time. The
# three share one bench store, trained into $(BENCH_STORE) on first use (the served cost does not depend
# on how well the policy learned, so 200 training steps).
BENCH_STORE ?= .bench-store
LOGGING_ROUNDS = --store $(BENCH_STORE) --train-steps 200 --sizes 100,1000,5000 --rounds 6 --seconds 10
bench-logging: $(STAMP)
	$(BIN)/python -m loadtest.bench.pinned $(LOGGING_ROUNDS) --simultaneous --aa \
		--results loadtest/bench/logging_pinned_aa.json --markdown BENCHMARKS.md
	$(BIN)/python -m loadtest.bench.pinned $(LOGGING_ROUNDS) --simultaneous \
		--results loadtest/bench/logging_pinned_simultaneous.json --markdown BENCHMARKS.md
	$(BIN)/python -m loadtest.bench.pinned $(LOGGING_ROUNDS) \
		--results loadtest/bench/logging_pinned.json --markdown BENCHMARKS.md

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(STORE) $(BENCH_STORE) .redis .pytest_cache .mypy_cache .ruff_cache loadtest/results
