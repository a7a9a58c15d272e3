# Two commands matter: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PIP = $(BIN)/pip install -q -c constraints.txt

.PHONY: demo test lint system-deps bench clean

# Real components are tested for real: the report's browser test drives Debian's Chromium with
# Playwright (never a downloaded browser); the store's conformance suite starts a PostgreSQL
# server from Debian's binaries. Both are installed here when missing.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HAVE_PG := $(shell command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && echo yes)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/tunebook run examples/digits_depth.yaml --workers 2 --root demo-output

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

system-deps:
	@missing=""; [ -x $(CHROMIUM) ] || missing="chromium"; \
	[ -n "$(HAVE_PG)" ] || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get install -y -q $$missing || { $(SUDO) apt-get update -q && \
	  $(SUDO) apt-get install -y -q $$missing; }; fi

test: lint system-deps
	$(BIN)/python -m pytest -q

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
