# make demo  - set up .venv (if missing) and run the quick-start scenario
# make test  - set up .venv (if missing) and run the test suite (slow cases excluded)
# make bench - set up .venv (if missing) and print the benchmark figures
# make lint  - ruff (lint and format check) and mypy (settings in setup.cfg); part of make test
# make docs  - build the documentation site (docs/, mkdocs.yml) with --strict into site/; part of make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs test-slow bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dsim run scenarios/quickstart.yaml
	@echo 'dsim is $(VENV)/bin/dsim: the docs write every command that way (or run ". $(VENV)/bin/activate" and type dsim)'

test: $(STAMP) lint docs
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check sim tests bench tools
	$(VENV)/bin/ruff format --check sim tests bench tools
	$(VENV)/bin/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) results site .pytest_cache .hypothesis
