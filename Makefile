# Quick start:  make up    (run the whole platform locally)
#               make test  (run every test)
# Both first check the system packages they need (tools/ensure-system-deps.sh:
# installed with apt-get when root, else it stops at once with the command to run),
# then bootstrap uv inside .tools/ (a virtualenv, never the system Python) and sync
# .venv from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: up test sync lint clean system-deps-up system-deps-test

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: the installed packages' .pyc files are written once, here.  Without them
# (uv writes none by default, and PYTHONDONTWRITEBYTECODE=1 stops Python writing them later)
# every process compiles each module it imports: a worker's or the API's imports cost 2.3 s of
# CPU instead of 0.85 s, at every start of every process the tests, `make up` and pytest run.
.venv/.synced: $(UV) uv.lock pyproject.toml Makefile $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --compile-bytecode
	touch $@

sync: .venv/.synced

# Prerequisites run left to right: the system check comes before uv needs python3-venv.
system-deps-up:
	@PYTHON=$(PYTHON) tools/ensure-system-deps.sh up

system-deps-test:
	@PYTHON=$(PYTHON) tools/ensure-system-deps.sh test

up: system-deps-up sync
	.venv/bin/bookingctl up $(ARGS)

# The suite on TEST_WORKERS pytest-xdist workers (each with its own embedded servers), whole
# files per worker, the end-to-end files first (conftest.py).  TEST_WORKERS=0: one process.
# Three on two cores: about a third of a test's time is waiting (polls, timeouts), which a
# third worker fills.
TEST_WORKERS ?= 3
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: system-deps-test sync
	.venv/bin/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: sync
	.venv/bin/ruff check .

clean:
	rm -rf .venv .tools
