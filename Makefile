# MixSweep: `make demo` and `make test` each do all set-up themselves (idempotent, quick when done).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mixsweep-setup
PYTEST_ARGS ?= --durations=20

.PHONY: help setup test test-fast check format demo lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup: $(STAMP)  ## create .venv, install Debian packages and pinned Python packages, smoke-check the stack

$(STAMP): pyproject.toml constraints.txt deploy/setup.sh deploy/smoke_check.py
	PYTHON=$(PYTHON) VENV=$(VENV) bash deploy/setup.sh
	@touch $(STAMP)

test: setup  ## set-up, then the whole test suite (unit + integration)
	$(BIN)/pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests"; [ $$rc -eq 5 ]; }

test-fast: setup  ## set-up, then unit tests only
	$(BIN)/pytest -m "not integration and not slow" $(PYTEST_ARGS)

check: setup  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup  ## set-up, then the main job (see README)
	PATH="$(abspath $(BIN)):$$PATH" bash deploy/demo.sh

lock: setup  ## re-resolve constraints.txt from the current environment
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^mixsweep' | sed 's/^torch==\(.*\)+cpu/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:  ## remove the virtual environment and caches (not your data or runs)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
