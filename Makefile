# Quick start:  make up    (run the whole platform locally)
#               make test  (run every test)
# Both bootstrap uv inside .tools/ (a virtualenv, never the system Python),
# then sync .venv from uv.lock.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v $(PYTHON))

.PHONY: up test sync lint clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages
	touch $@

sync: .venv/.synced

up: sync
	.venv/bin/bookingctl up $(ARGS)

test: sync
	.venv/bin/pytest $(PYTEST_ARGS)

lint: sync
	.venv/bin/ruff check .

clean:
	rm -rf .venv .tools
