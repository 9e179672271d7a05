# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install compiled clean sandbox bench bench-quick

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The mypyc build of the SLA engine (ticketbridge.compiled): rebuilt whenever a file it was compiled
# from changed (the script compares hashes, so this costs nothing when it is current), pure Python
# when it cannot be built. The service checks the same hashes at import and never runs a stale build.
compiled: $(STAMP)
	$(BIN)/python tools/build_compiled.py --if-stale

install: $(STAMP) compiled

demo: $(STAMP) compiled
	$(BIN)/ticketbridge demo

test: $(STAMP) compiled
	$(BIN)/python -m ruff check src tests bench tools
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests bench tools
	$(BIN)/python -m mypy

# Issue 8's benchmarks (bench/run.py): the full runs rewrite bench/RESULTS.md; the quick ones
# (under 2 minutes) write bench/RESULTS-quick.md.
bench: $(STAMP) compiled
	$(BIN)/python bench/run.py

bench-quick: $(STAMP) compiled
	$(BIN)/python bench/run.py --quick

sandbox: $(STAMP)
	$(BIN)/ticketbridge sandbox --seed

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
