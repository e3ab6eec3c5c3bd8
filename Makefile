# `make run` and `make test` need only Python 3.11+ and make: they create .venv and install
# the locked dependencies (hash-checked) on first use, and again when a lock file changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run worker test lint bench install clean-data

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.lock | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

$(DEV): requirements-dev.lock | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@ $(RUNTIME)

install: $(RUNTIME)

# exec: the launcher replaces the shell, so it is make's own child and dies with make.
run: $(RUNTIME)
	exec $(PY) -m local_stack

# Only an image worker, for another machine: it needs MONGODB_URL, REDIS_URL and STORAGE_BACKEND=s3.
worker: $(RUNTIME)
	exec $(PY) -m local_stack worker

test: $(DEV)
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (lint and format) over the whole tree; mypy --strict over the services (pyproject.toml).
lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(DEV)
	$(PY) -m benchmarks $(BENCH_ARGS)

clean-data:
	rm -rf data
