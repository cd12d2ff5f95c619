# The two commands of the README: `make up` (setup and run) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers of `make test` / `make test-fast`: whole test files per worker
# (--dist loadfile), so a module's shared cluster starts once. Two is this project's CI
# machine (2 cores); TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

.PHONY: install system-deps up demo test test-fast lint bench clean

install: $(STAMP)

# torch/torchvision are pinned to the builds this project is tested with; they are
# installed first so the resolver never pulls another torch for a dependency.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests drive: Chromium for the browser test of the review screen.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium (browser test of the review screen)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

up: install
	BENTOML_DO_NOT_TRACK=true $(VENV)/bin/regrasp up

demo: install
	BENTOML_DO_NOT_TRACK=true $(VENV)/bin/regrasp demo

# Runs the whole suite against a real PostgreSQL (see scripts/with-postgres.sh).
test: install system-deps
	BENTOML_DO_NOT_TRACK=true bash scripts/with-postgres.sh $(VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/ruff format --check shared services tests bench

# The suite without the tests marked `slow` (the long end-to-end runs, the biggest
# networks): a quick check while working. `make test` (and CI) still runs everything.
test-fast: install
	BENTOML_DO_NOT_TRACK=true bash scripts/with-postgres.sh $(VENV)/bin/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/ruff format --check shared services tests bench

lint: install
	$(VENV)/bin/ruff check shared services tests bench
	$(VENV)/bin/ruff format --check shared services tests bench

clean:
	rm -rf $(VENV) .regrasp .pytest_cache
