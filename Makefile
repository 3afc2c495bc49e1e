# Developer entry points. `make up` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install up test bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

up: install
	$(PY) -m deploy.local

# Two pytest workers (pytest-xdist), one test file each at a time: most tests wait on real processes
# (gunicorn nodes, routers, stacks), so two workers halve the wall time on two cores. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	$(PY) -m loadtests.bench

clean:
	rm -rf $(VENV) var .pytest_cache
