# Developer entry points. `make up` and `make test` are the two set-up commands (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install up test bench loadtest clean

# Then the router's hot modules compiled with mypyc (canary/native/build.py), again only when their sources
# changed; without a compiler the router runs its plain-Python modules (canary/native/compiled.py says which).
install: $(STAMP)
	$(PY) -m canary.native.build build --if-stale || echo "warning: the router runs its pure-Python modules"

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

# A short mixed run (every journey, 60 s) against a running `make up`; prints the summary table.
# More: `$(PY) -m loadtests run --help` and docs/loadtests.md. LOADTEST_ARGS adds options (e.g. --slo 'p99<800').
loadtest: install
	$(PY) -m loadtests run --scenario steady --duration 60 $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache build canary/dataplane/*.so canary/dataplane/native-build.json \
	  canary/*.so canary/native-build.json  # the build's place before the router had packages
