# Two entry points a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use and install poller with its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/poller demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check poller tests bench
	$(BIN)/ruff format --check poller tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python -m bench.polling
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.proxy
	$(BIN)/python -m bench.ha

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
