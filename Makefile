# One entry point for people and CI. Every target installs what it needs
# first, so `make demo` and `make test` work on a fresh clone.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EMULATOR_DIR := local/firestore-emulator
PYTEST_ARGS ?=
# make demo WAIT=1: wait for you to call the printed URL instead of
# sending the callback automatically.
WAIT ?=
# make run WORKFLOW=path/to/your.yaml: your own workflow on the local stack;
# it waits for you to call each printed URL, unless AUTO=1. ARGS is the
# execution argument as JSON (python -m local run --args), for example
#   make run WORKFLOW=workflow/example.yaml ARGS='{"subject": "Deploy 1.5"}' AUTO=1
WORKFLOW ?= workflow/example.yaml
AUTO ?=
ARGS ?=
# make bench WRITE=1: also rewrite the tracked bench/RESULTS.md and
# docs/scale.md from the run; without it the results go to bench/out/ (ignored).
WRITE ?=

.PHONY: install test lint format demo run bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt function/requirements.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	@echo "Installing the Python packages into $(VENV) (first run: about a minute)..."
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -r requirements-dev.txt
	touch $@

$(EMULATOR_DIR)/node_modules/.installed: $(EMULATOR_DIR)/package.json $(EMULATOR_DIR)/package-lock.json
	@echo "Installing the Firestore emulator (npm) into $(EMULATOR_DIR)/node_modules..."
	cd $(EMULATOR_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(EMULATOR_DIR)/node_modules/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: install
	$(PY) -m local demo $(if $(WAIT),--wait-for-human,)

# ARGS goes to the shell in single quotes, each of its own quotes escaped.
run: install
	$(PY) -m local run $(WORKFLOW) $(if $(AUTO),--auto-callback,) $(if $(ARGS),--args '$(subst ','\'',$(value ARGS))',)

# About 12 minutes on 2 cores; progress on stderr, the total at the end.
# The report and its capacity model go to bench/out/; with WRITE=1 the tracked
# bench/RESULTS.md and docs/scale.md instead, both from the same run (the
# model is recomputed even when the run fails, so the two never disagree).
bench: install
	$(PY) -m bench $(if $(WRITE),--write,)

clean:
	rm -rf $(VENV) $(EMULATOR_DIR)/node_modules .pytest_cache .ruff_cache
