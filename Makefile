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

.PHONY: help setup run test lint
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# uv lives in its own venv so that `uv sync` (which removes what the lock does not list) leaves it alone.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV) ## create .venv from the lock file (no other install step needed)
	$(UV) sync --frozen --quiet

include $(wildcard mk/*.mk)
