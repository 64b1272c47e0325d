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

# Virus scanning needs ClamAV and its signatures (freshclam, which needs the network);
# without them the demo says so and runs with scanning off rather than wait for a scanner.
CLAMAV_DB ?= /var/lib/clamav
demo: $(VENV)/.installed
	@scan=true; \
	if [ -z "$$PRESERVATION_CLAMD_SOCKET" ] && ! { command -v clamscan >/dev/null && ls $(CLAMAV_DB)/*.c[lv]d >/dev/null 2>&1; }; then \
	  scan=false; echo "note: no ClamAV signatures in $(CLAMAV_DB): the demo runs with virus scanning off (PRESERVATION_VIRUS_SCAN=false)"; \
	fi; \
	PRESERVATION_VIRUS_SCAN=$${PRESERVATION_VIRUS_SCAN:-$$scan} PRESERVATION_HOME=$(DEMO_HOME) $(BIN)/preservation ingest examples/bags/sample-collection --tenant demo
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
