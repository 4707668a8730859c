# Two entry points a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use. The demo needs poller alone; test, lint and bench add
# the development tools (the `dev` extra).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(VENV)/.package: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.package

demo: $(VENV)/.package
	$(BIN)/poller demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check poller tests bench
	$(BIN)/ruff format --check poller tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python -m bench.polling
	$(BIN)/python -m bench.libraries
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.ha_delivery
	$(BIN)/python -m bench.brokers
	$(BIN)/python -m bench.proxy
	$(BIN)/python -m bench.hints
	$(BIN)/python -m bench.ha
	$(BIN)/python -m bench.shutdown

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
