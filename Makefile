# `make run` and `make test` need only Python 3.11+ and make: they create .venv and install
# the locked dependencies (hash-checked) on first use, and again when a lock file changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
# The web page's tests drive Debian's Chromium through Playwright (never a browser Playwright downloads).
CHROMIUM := /usr/bin/chromium
COMMAND := $(VENV)/bin/image-service
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run worker test test-unit lint docs bench bench-compare install clean-data

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.lock | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

$(DEV): requirements-dev.lock | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@ $(RUNTIME)

# The project itself, editable, for its `image-service` command (its code stays where it is).
$(COMMAND): pyproject.toml $(RUNTIME)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .

install: $(COMMAND)

# exec: the launcher replaces the shell, so it is make's own child and dies with make.
run: $(RUNTIME)
	exec $(PY) -m local_stack

# Only an image worker, for another machine: it needs MONGODB_URL, REDIS_URL and STORAGE_BACKEND=s3.
worker: $(RUNTIME)
	exec $(PY) -m local_stack worker

# Installed once, when missing: with apt-get as root, otherwise a message saying how.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Chromium for the web page's tests (apt-get install chromium)"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "make test needs Chromium at $(CHROMIUM) for the web page's tests." >&2; \
		echo "Install it with: sudo apt-get update && sudo apt-get install -y chromium" >&2; \
		exit 1; \
	fi
	@test -x $(CHROMIUM) || { echo "apt-get did not install $(CHROMIUM)" >&2; exit 1; }

test: $(DEV) | $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

# The unit tests only: no stack, no browser; seconds, for the edit-test loop.
test-unit: $(DEV)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# ruff (lint and format) over the whole tree; mypy --strict over the services (pyproject.toml).
lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# docs/configuration.md's tables, from the settings classes (a test checks they match).
docs: $(RUNTIME)
	$(PY) -m shared.configuration_docs

bench: $(DEV)
	$(PY) -m benchmarks $(BENCH_ARGS)

# The worker-host run on BASE (a revision) and on this checkout, alternated: make bench-compare BASE=HEAD~1
bench-compare: $(DEV)
	$(PY) -m benchmarks.compare $(BASE) $(COMPARE_ARGS)

clean-data:
	rm -rf data
