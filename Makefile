# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WEBCHAT_TOOLS := webchat/node_modules/.package-lock.json

.PHONY: run test lint docs install clean bench chaos webchat

# One venv; each stamp records which extras are installed and is redone when pyproject changes.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run-installed

install: $(VENV)/.test-installed

## Run the local stack: Synapse from the venv and the bridge on SQLite, on loopback. Ctrl-C stops.
## DEV_DATA_DIR (.dev), DEV_HOMESERVER_PORT (8008), DEV_BRIDGE_PORT (29330) and DEV_WEBHOOK_PORT
## (29331) change the defaults.
run: $(VENV)/.run-installed
	exec $(BIN)/python -m bridge dev

## Lint, then the whole suite (real Synapse, PostgreSQL at BRIDGE_TEST_DATABASE_URL, SQLite,
## the web chat in Debian's Chromium, its bundle rebuilt and compared with the one shipped).
test: $(VENV)/.test-installed lint /usr/bin/chromium $(WEBCHAT_TOOLS)
	$(BIN)/python -m pytest

# The browser the web chat's tests drive: Debian's Chromium (apt-get, as root or with sudo).
/usr/bin/chromium:
	scripts/install-chromium.sh

# The web chat's build tools (matrix-js-sdk, DOMPurify, esbuild) from its lockfile; needs Node.
$(WEBCHAT_TOOLS): webchat/package-lock.json
	cd webchat && npm ci --no-audit --no-fund
	touch $@

## Rebuild the web chat into bridge/webchat/static/ from webchat/ (commit the result).
webchat: $(WEBCHAT_TOOLS)
	cd webchat && npm run build

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Fault injection, long mode: 50 kill cycles, minutes-long outages (see docs/reliability.md).
## `make test` runs the short version. CHAOS_ARGS adds options (--chaos-seed=N, ...).
chaos: $(VENV)/.test-installed
	$(BIN)/python -m pytest tests/chaos -m chaos --chaos-long -o timeout=3600 $(CHAOS_ARGS)

## Benchmarks against Synapse in the same run (12 to 85 minutes by machine): a table, and the figures
## with their targets in bench/results/latest.json. See docs/performance.md.
bench: $(VENV)/.test-installed /usr/bin/chromium
	$(BIN)/python -m bench

## Regenerate docs/configuration.md from the settings model.
docs: $(VENV)/.run-installed
	$(BIN)/python -m bridge config-reference > docs/configuration.md

clean:
	rm -rf $(VENV) .dev .pytest_cache .ruff_cache .hypothesis webchat/node_modules test-artifacts
