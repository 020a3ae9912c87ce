# The commands README.md promises. Everything installs into .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
STORE ?= store
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run demo test lint openapi loadtest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to the CPU build on this disk (torch==2.13.0 in the train extra).
	$(BIN)/python -m pip install --quiet -e '.[serve,train,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

$(STORE)/demo/ACTIVE: | $(STAMP)
	$(BIN)/cascade demo --store $(STORE) --example $(STORE)/example-rank.json

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

openapi: $(STAMP)
	$(BIN)/cascade openapi --out openapi.yaml

loadtest: $(STAMP) $(STORE)/demo/ACTIVE
	$(BIN)/python -m loadtest.run --store $(STORE)

# The benchmark harness: trains its own policy, runs every server on 127.0.0.1, writes BENCHMARKS.md + .png.
bench: $(STAMP)
	$(BIN)/cascade bench

clean:
	rm -rf $(VENV) $(STORE) .redis .pytest_cache .mypy_cache .ruff_cache loadtest/results
