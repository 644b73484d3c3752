# Two commands a user needs: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test test-fast test-slow lint typecheck contracts install clean bench mutation

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,cluster,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m bootstrap run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n 2 -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q || test $$? -eq 5  # 5: no slow test collected

# The whole gate: lint, types, layer contracts, then the test suite.
test: lint typecheck contracts test-fast

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the grid core (src/domain/grid_core.py) against tests/unit/domain: every
# mutant must fail a test. Slow (minutes), so not part of `make test`; it works in mutants/, a
# copy of the tree, from scratch each time. See benchmarks/MUTATION.md.
MUTATION_STORIES ?= 40
MUTATION_JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
mutation: $(STAMP)
	rm -rf mutants
	GRIDBOT_MUTATION=1 GRID_STORIES=$(MUTATION_STORIES) $(BIN)/mutmut run --max-children $(MUTATION_JOBS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var mutants
