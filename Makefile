# sfsync developer commands. `make test` is the one the README and CI use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck unit integration demo stack-up stack-down bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# ruff, then the import contracts of .importlinter (the layers of docs/architecture.md)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# ruff, mypy, then every test. Integration tests use KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL
# when set, else start the project's own local stack (and stop it afterwards).
test: lint typecheck
	$(BIN)/pytest -ra

unit: $(STAMP)
	$(BIN)/pytest -ra tests/unit

integration: $(STAMP)
	$(BIN)/pytest -ra tests/integration

stack-up: $(STAMP)
	$(BIN)/sfsync stack up

stack-down: $(STAMP)
	$(BIN)/sfsync stack down

bench: $(STAMP)
	$(BIN)/python bench/produce.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/emulator.py
	$(BIN)/python bench/sink_cpu.py
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/processor_peer.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/workspaces.py

demo: $(STAMP)
	$(BIN)/sfsync demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
