# Launcher — the two commands a newcomer needs: `make run` and `make test`.
# Both create the virtual environment and install what they need on their own.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STAMPS := .make-stamps

.PHONY: run test fuzz chromium lint fmt bench screenshots mutate clean

# (Re)install only when pyproject.toml changed since the last install.
$(STAMPS)/install: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Launcher needs Python 3.11+"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@mkdir -p $(STAMPS) && touch $@

.env:
	cp .env.example .env
	@echo "Created .env from .env.example (DEBUG on, local sandbox)."

## make run: set up, then serve on http://127.0.0.1:$(PORT)/ with the sandbox and the worker.
run: $(STAMPS)/install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_sandbox
	$(PY) manage.py ensure_demo_user
	$(PY) manage.py reconcile_runs --schedule
	@echo ""
	@echo "  Launcher is starting on http://127.0.0.1:$(PORT)/   (Ctrl-C stops everything)"
	@echo ""
	@# The worker and the web server run side by side; Ctrl-C (or either one dying) stops both.
	@# runserver is threaded: the launcher calls the sandbox on this same server.
	@# Ctrl-C is how one stops it, not an error: the recipe then exits 0 (no "make: *** Error
	@# 143"), after both have stopped. Either one dying on its own still fails the recipe.
	@trap 'trap - INT TERM; kill $$(jobs -p) 2>/dev/null; wait 2>/dev/null; echo " Stopped."; exit 0' INT TERM; \
	  PORT=$(PORT) $(PY) manage.py db_worker --queue-name '*' --interval 0.5 --no-reload & \
	  PORT=$(PORT) $(PY) manage.py runserver --noreload 127.0.0.1:$(PORT) & \
	  wait -n; status=$$?; kill $$(jobs -p) 2>/dev/null; wait 2>/dev/null; exit $$status

## make test: lint, then the whole suite (browser tests included). SQLite unless DATABASE_URL.
test: $(STAMPS)/install chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

## make fuzz: the property-based tests (tests/hardening/test_fuzz_*.py) with their long profile:
## many more examples of every form, filter, query parameter, batch parser, the webhook and the
## sandbox API, a fresh random seed each run (make test runs a short, repeatable profile).
## FUZZ_EXAMPLES sets the examples per test (default 300); the tally lands in fuzz-report.json.
fuzz: $(STAMPS)/install
	HYPOTHESIS_PROFILE=fuzz FUZZ_REPORT=fuzz-report.json $(PY) -m pytest tests/hardening -k fuzz \
	  -p no:logging $(PYTEST_ARGS)

## make screenshots: the README's pictures (docs/screenshots/*.png), desktop and phone widths.
## Starts its own live server with demo data (nothing else needs to run); needs Debian's chromium.
screenshots: $(STAMPS)/install
	$(PY) docs/screenshots/take.py

## make bench: the figures of docs/benchmarks.md (not part of make test; about 5 minutes).
## gunicorn on loopback with the sandbox, load from wrk (installed from Debian when root).
## PostgreSQL when DATABASE_URL points at one (a throwaway database on it), else SQLite.
bench: $(STAMPS)/install .env
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; \
	  else echo "make bench needs wrk: sudo apt-get install -y wrk" >&2; exit 1; fi; }
	$(PY) manage.py bench $(BENCH_ARGS)

## make mutate: mutation testing (mutmut) of the safety-critical modules, each mutant against the
## tests that reach it — a one-off, not part of make test (an hour or more on 2 cores; figures and
## survivors in docs/testing.md). One module: make mutate MUTANTS='launcher.services.reconcile.*'
mutate: $(STAMPS)/install-mutate
	rm -rf mutants
	$(VENV)/bin/mutmut run $(if $(MUTANTS),"$(MUTANTS)")
	$(VENV)/bin/mutmut results

$(STAMPS)/install-mutate: $(STAMPS)/install
	$(PY) -m pip install --quiet -e ".[dev,mutate]"
	@touch $@

# The browser tests drive Debian's Chromium (Playwright's own download does not work offline).
# Skip them with PYTEST_ARGS="-m 'not browser'"; they never skip silently.
chromium:
	@command -v chromium >/dev/null || [ -x "$${CHROMIUM_PATH:-/nonexistent}" ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "The browser tests need Chromium: sudo apt-get install -y chromium" >&2; fi; }

lint: $(STAMPS)/install
	$(VENV)/bin/ruff check .

fmt: $(STAMPS)/install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) $(STAMPS) staticfiles .pytest_cache .ruff_cache mutants
