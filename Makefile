# apprun — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Parallel test workers (pytest-xdist); 2 cores here.
PYTEST_WORKERS ?= 2

.PHONY: help run test check fmt bench install clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[1mmake %-8s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install apprun with its dev dependencies

run: $(STAMP) ## Run apprun on 127.0.0.1:8080 on its embedded defaults (SQLite in ./apprun_data)
	$(BIN)/apprun serve

test: $(STAMP) ## Install, make sure PostgreSQL is up, run the whole test suite
	@scripts/ensure-services.sh
	$(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

check: $(STAMP) ## ruff format --check, ruff, mypy --strict, import-linter
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP) ## Format and auto-fix what ruff can
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP) ## Benchmarks against PocketBase and raw SQL in one run (~10 min; QUICK=1 for ~2 min)
	@scripts/ensure-services.sh
	$(BIN)/python -m benchmarks --mode $(if $(QUICK),quick,full) --command "make bench$(if $(QUICK), QUICK=1)"

clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache apprun_data
