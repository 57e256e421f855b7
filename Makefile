# metrics-mesh: every target installs what it needs first (virtualenv, PyPI packages,
# Debian packages for the real-browser / real-Prometheus tests).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv system-deps run test lint format proto proto-check bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "venv: installing metrics-mesh and its dev tools into $(VENV) ..."
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create/refresh the virtualenv (.venv) with every package

system-deps: ## install Debian's chromium, certutil, prometheus, wrk, tmux and postgresql when missing
	@scripts/install-system-deps.sh

run: $(STAMP) ## install, then run the demo fleet + aggregator + gateway (Ctrl-C stops all)
	$(BIN)/metrics-mesh demo

test: $(STAMP) system-deps lint proto-check ## install, lint, check generated code, run the tests
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy on our packages, buf lint + format
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code

format: $(STAMP) ## apply ruff and buf formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/buf format -w

proto: $(STAMP) ## regenerate generated/ from proto/
	rm -rf generated/metricsmesh
	VENV_BIN=$(BIN) scripts/gen-proto.sh generated

proto-check: $(STAMP) ## fail when generated/ differs from a fresh generation
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	VENV_BIN=$(BIN) scripts/gen-proto.sh "$$tmp"; \
	if ! diff -r -x __pycache__ "$$tmp/metricsmesh" generated/metricsmesh; then \
	  echo "generated/ is stale: run 'make proto' and commit the result" >&2; exit 1; fi; \
	echo "proto-check: generated/ matches proto/"

bench: $(STAMP) system-deps ## run every benchmark in bench/ and print the figures
	$(BIN)/python -m bench

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
