# The two commands a newcomer needs: `make demo` and `make test`.
# Both create the virtual environment they need on first use.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
DEMO_HOME ?= var/demo

.PHONY: demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,siegfried]'
	touch $@

demo: $(VENV)/.installed
	PRESERVATION_HOME=$(DEMO_HOME) $(BIN)/preservation ingest examples/bags/sample-collection --tenant demo
	PRESERVATION_HOME=$(DEMO_HOME) $(BIN)/preservation status

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m bench

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf var/demo
