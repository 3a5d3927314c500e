# make demo  - set up .venv (if missing) and run the quick-start scenario
# make test  - set up .venv (if missing) and run the test suite (slow cases excluded)
# make bench - set up .venv (if missing) and print the benchmark figures
# make lint  - ruff (lint and format check) and mypy (settings in setup.cfg); part of make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-slow bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dsim run scenarios/quickstart.yaml

test: $(STAMP) lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check sim tests bench tools
	$(VENV)/bin/ruff format --check sim tests bench tools
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
