# Two commands set up a fresh machine: `make demo` (the main job) and `make test` (lint, types, tests).
# Both create or reuse .venv and install ampkit with torch pinned through constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ampkit-installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint typecheck unit bench bench-gpu install clean

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

# The benchmarks run in a venv of their own with the `bench` extra (the peers webdataset, MDS,
# litdata): mosaicml-streaming pins numpy<2.2 and transformers<5, which the dev venv must not get.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.ampkit-bench-installed

$(BENCH_STAMP): pyproject.toml constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/overhead.py
	$(BENCH_VENV)/bin/python benchmarks/matmul_dtypes.py
	$(BENCH_VENV)/bin/python benchmarks/data_load.py
	$(BENCH_VENV)/bin/python benchmarks/data_convert.py
	$(BENCH_VENV)/bin/python benchmarks/speedup_tinygpt.py

# The GPU suite (docs/gpu.md): one command, at most 8 minutes on one H100/H200, writes docs/benchmarks-gpu.md.
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs .pytest_cache .mypy_cache .ruff_cache
