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

# The demo service keeps its data in ./var so it never touches a real installation.
PORT ?= 8000
export QUEUEDESK_DATA_DIR ?= $(CURDIR)/var

run: $(STAMP)
	@$(BIN)/queuedesk-server demo
	@echo "QueueDesk service: http://127.0.0.1:$(PORT)  (API docs: http://127.0.0.1:$(PORT)/docs)"
	@echo "The staff console is not part of this build yet; sign in through the API meanwhile."
	$(BIN)/queuedesk-server serve --host 127.0.0.1 --port $(PORT)

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
