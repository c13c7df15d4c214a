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

# $(call quietly,COMMAND,WHAT): run a noisy install step with its output in a
# log file, shown (and kept) only if the step fails.
define quietly
	@log=$$(mktemp "$${TMPDIR:-/tmp}/workflow-callbacks-install.XXXXXX"); \
	if $(1) >"$$log" 2>&1; then rm -f "$$log"; \
	else status=$$?; cat "$$log" >&2; \
	echo "$(2) failed (exit $$status); its output is above and in $$log" >&2; exit $$status; fi
endef

.PHONY: install test lint format demo run bench screenshots clean

# Installs print a line each, not pip's and npm's hundreds: see quietly.
$(VENV)/.installed: requirements.txt requirements-dev.txt function/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	@echo "Installing the Python packages into $(VENV) (first run: about a minute)..."
	$(call quietly,$(PYTHON) -m venv $(VENV),python -m venv $(VENV))
	$(call quietly,$(PY) -m pip install --upgrade pip,pip install --upgrade pip)
	$(call quietly,$(PY) -m pip install --progress-bar off -r requirements-dev.txt,pip install -r requirements-dev.txt)
	@touch $@

$(EMULATOR_DIR)/node_modules/.installed: $(EMULATOR_DIR)/package.json $(EMULATOR_DIR)/package-lock.json
	@echo "Installing the Firestore emulator (npm) into $(EMULATOR_DIR)/node_modules..."
	$(call quietly,cd $(EMULATOR_DIR) && npm ci --no-audit --no-fund,npm ci)
	@touch $@

install: $(VENV)/.installed $(EMULATOR_DIR)/node_modules/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Also: Pulumi.yaml and docs/deploy.md follow CONFIG_KEYS, and the types check.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m infra.config_reference --check
	$(VENV)/bin/mypy

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

# docs/approval-link-{open,answered,expired}.png: the approval link's pages,
# taken by the browser tests that reach each state (Debian's chromium and
# chromedriver; without them this fails rather than skip).
screenshots: install
	SCREENSHOTS_DIR=docs $(PY) -m pytest -q tests/browser/test_approvals_in_a_browser.py \
		-k "test_two_approve or test_a_timeout_with_one_approval"

clean:
	rm -rf $(VENV) $(EMULATOR_DIR)/node_modules .pytest_cache .ruff_cache
