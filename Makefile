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
HOST ?= 127.0.0.1
PORT ?= 8000
export QUEUEDESK_DATA_DIR ?= $(CURDIR)/var

# The service with the demo tenant, and the console signed in as staff1 where a
# display exists (see packaging/run_demo.py).
run: $(STAMP)
	$(BIN)/python packaging/run_demo.py --host $(HOST) --port $(PORT)

# PNGs of the console into docs/screenshots/, in a real X server when xvfb is there.
screenshots: $(STAMP)
	@if command -v xvfb-run >/dev/null; then \
		xvfb-run -a -s "-screen 0 1920x1080x24" $(BIN)/python packaging/screenshots.py; \
	else \
		echo "xvfb-run not found (Debian: apt install xvfb); using Qt's offscreen platform"; \
		QT_QPA_PLATFORM=offscreen $(BIN)/python packaging/screenshots.py; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict core sync
	$(BIN)/lint-imports

# The console's UI tests run in a pytest process of their own. That process once
# crashed inside Qt (SIGSEGV while waiting on the event loop). Widgets freed by
# another thread's cyclic collection crash it that way (tests/ui/gc_churn.py);
# desktop/gui_gc.py keeps every collection on the UI thread since. Should a crash
# still happen, a crash, never a failing test, gets one more run of those tests.
unit: $(STAMP)
ifeq ($(strip $(PYTEST_ARGS)),)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest --ignore=tests/ui
	@QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/ui; status=$$?; \
	if [ $$status -ge 128 ]; then \
		echo "The UI tests crashed (signal $$((status - 128))); running them once more."; \
		QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/ui; \
	else exit $$status; fi
else
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)
endif

test: lint unit

bench: $(STAMP)
	@set -e; for b in benchmarks/[!_]*.py; do \
		echo "== $$b"; $(BIN)/python $$b $(BENCH_ARGS); \
	done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
