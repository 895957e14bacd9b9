# QueueDesk developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench screenshots clean

# The environment is rebuilt when pyproject.toml changes (the stamp is older).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m server.devrun

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict core sync
	$(BIN)/lint-imports

unit: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint unit

bench: $(STAMP)
	@set -e; for b in benchmarks/*.py; do \
		echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS); \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
