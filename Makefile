# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint docs install clean bench chaos

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

## Lint, then the whole suite (real Synapse, PostgreSQL at BRIDGE_TEST_DATABASE_URL, SQLite).
test: $(VENV)/.test-installed lint
	$(BIN)/python -m pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Fault injection, long mode: 50 kill cycles, minutes-long outages (see docs/reliability.md).
## `make test` runs the short version. CHAOS_ARGS adds options (--chaos-seed=N, ...).
chaos: $(VENV)/.test-installed
	$(BIN)/python -m pytest tests/chaos -m chaos --chaos-long -o timeout=3600 $(CHAOS_ARGS)

## Benchmarks against Synapse in the same run (about 7 minutes): a table, and the figures
## with their targets in bench/results/latest.json. See docs/performance.md.
bench: $(VENV)/.test-installed
	$(BIN)/python -m bench

## Regenerate docs/configuration.md from the settings model.
docs: $(VENV)/.run-installed
	$(BIN)/python -m bridge config-reference > docs/configuration.md

clean:
	rm -rf $(VENV) .dev .pytest_cache .ruff_cache .hypothesis
