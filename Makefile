# Earshot: `make run` serves the demo, `make test` runs the suite. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FLASK_APP := app.py
EARSHOT_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test test-postgres lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# As a wheel install would: where PYTHONDONTWRITEBYTECODE is set, every process (web
	# workers, `flask import` and its helpers) would otherwise compile these at start.
	$(BIN)/python -m compileall -q app.py portal importers > /dev/null
	touch $(STAMP)

install: $(STAMP)

# The demo serves on loopback with the demo sign-in (anyone can be the demo operator, developer
# or admin); the app refuses that in production.
run: $(STAMP)
	$(BIN)/flask db upgrade
	$(BIN)/flask demo load
	EARSHOT_DEMO_SIGNIN=1 $(BIN)/flask run --host 127.0.0.1 --port 5000

# pytest exits 5 when it collects nothing: that is a failure here, never a pass.
test: $(STAMP)
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

test-postgres: $(STAMP)
	EARSHOT_TEST_DATABASE_URL=$(EARSHOT_TEST_DATABASE_URL) EARSHOT_TEST_BACKEND=postgres \
	  $(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/import_bench.py

clean:
	rm -rf $(VENV) data/var .pytest_cache .mypy_cache .ruff_cache
