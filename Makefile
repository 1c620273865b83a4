# Two commands set up a fresh machine: `make demo` (the main job) and `make test` (lint, types, tests).
# Both create or reuse .venv and install ampkit with torch pinned through constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ampkit-installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint typecheck unit bench install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,test-integrations]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ampkit compare --task digits --precisions auto --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/matmul_dtypes.py
	$(BIN)/python benchmarks/data_load.py
	$(BIN)/python benchmarks/data_convert.py
	$(BIN)/python benchmarks/speedup_tinygpt.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
