# The project's commands. `make run` is the main job on embedded defaults; `make test` runs every test.
# Each area adds its own targets in mk/*.mk.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
TOOLS := .tools
UV := $(TOOLS)/bin/uv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

DVC := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc

.PHONY: help setup data train metrics run test test-fast lint
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# uv lives in its own venv so that `uv sync` (which removes what the lock does not list) leaves it alone.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# Bytecode compiled at install: every command starts in about half the time (imports are most of a CLI's start).
setup: $(UV) ## create .venv from the lock file (no other install step needed)
	UV_COMPILE_BYTECODE=1 $(UV) sync --frozen --quiet

# What a target needs to run any of the project's commands: set up once, on first use (a fresh clone's
# `make promote` or `make advise` works without `make setup` first); `make setup` itself re-syncs every time.
$(PY): | $(UV)
	UV_COMPILE_BYTECODE=1 $(UV) sync --frozen --quiet

include $(wildcard mk/*.mk)

data: setup ## fetch the versioned CSV through DVC (the default remote is sample-remote/ in this repo)
	$(DVC) pull --quiet data.dvc

train: data ## dvc repro: Optuna search of XGBoost, every trial and the best model logged to MLflow
	$(DVC) repro

metrics: | $(PY) ## the headline metrics of the last training (dvc metrics show)
	@$(DVC) metrics show

run: train ## the main job on embedded defaults: data, train, promote, export, a REST call to the served model
	@$(DVC) metrics show
	$(PY) -m registry.promote --reason "make run"
	$(PY) -m infra.local --port 0 --request self-test
	@$(PY) -m core

test: data team-deps bench-deps ## every test (real MLflow, dvc repro, gunicorn, moto, CDK synth, PostgreSQL, wrk)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: data ## the tests not marked slow
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff over the whole project
	$(VENV)/bin/ruff check .
