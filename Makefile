# Two entry points on a fresh machine: `make demo` and `make test`. Each builds .venv by itself.
# `make test-fast` is the inner loop: lint, types and every test not marked slow (processes, servers, chaos,
# crash, generated orgs, the fault matrix and anything else over about a second); on 2 cores about 45 s (44.8 s
# measured with everything merged, load about 1.5).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Byte code is cached: with PYTHONDONTWRITEBYTECODE set (some images set it), every test process compiled the
# project and pytest rewrote every test module's asserts again, about 5 s per process before the first test.
unexport PYTHONDONTWRITEBYTECODE
# Tests run in one process per CPU (pytest-xdist); `make test PARALLEL=` runs them in one.
PARALLEL ?= -n logical
# Their journals are fsynced thousands of times: seconds on a busy disk, nothing in memory. Their temporary
# folders go to /dev/shm when it has 2 GB free (pytest keeps only those of failed tests), unless TMPDIR is set.
SHM := $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 > 2000000 {print "/dev/shm"}')
ifneq ($(SHM),)
export TMPDIR ?= $(SHM)
endif

.PHONY: demo test test-fast lint typecheck bench bench-compare clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sfcleanup demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PARALLEL)

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PARALLEL) -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.localorg_bench

bench-compare: $(STAMP)
	$(BIN)/python -m bench.compare --suite

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache sfcleanup-journal
