# recops: `make demo` and `make test` are all a newcomer needs. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The install stamp is keyed on everything that decides what gets installed: a second `make setup` is a
# no-op, a change to any of these files re-installs.
REQ_HASH := $(shell cat requirements.txt constraints.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: help setup test test-all lint format demo repro freeze bench stack-up stack-down clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## Create .venv (Python 3.11) from requirements.txt + constraints.txt
$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup ## Run the test suite (all tiers except slow and gpu)
	$(BIN)/python -m pytest

test-all: setup ## Run every test, slow ones included (gpu tests skip without a GPU)
	$(BIN)/python -m pytest -m "not gpu"

lint: setup ## ruff check, ruff format --check, mypy --strict, import-linter layer contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core models registry pipelines service
	$(BIN)/lint-imports

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup ## Run the whole workflow end to end through the Airflow DAGs (dag.test) on embedded defaults
	PATH="$(CURDIR)/$(BIN):$$PATH" bash infra/scripts/demo.sh

repro: setup ## dvc repro with the venv on PATH (the stages call `recops`)
	PATH="$(CURDIR)/$(BIN):$$PATH" OPENBLAS_NUM_THREADS=1 $(BIN)/dvc repro

freeze: setup ## Rewrite constraints.txt from the current venv
	@{ head -n 2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

bench: setup ## Run the benchmarks in bench/ (prints figures; see docs/benchmarks.md)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

stack-up: setup ## Start Airflow 3 + MLflow on PostgreSQL, 127.0.0.1 (RECOPS_STACK_EXECUTOR=celery: + a Celery worker)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash infra/scripts/stack.sh up

stack-down: ## Stop every process stack-up started (and nothing else)
	bash infra/scripts/stack.sh down

clean: ## Remove runtime state and derived artifacts (keeps .venv and data/)
	rm -rf runtime artifacts .pytest_cache .mypy_cache .ruff_cache
