# One entry point for newcomers and CI: `make demo` runs the server, `make check` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JS_STAMP := tests/hub/js/node_modules/.installed
# The browser tests drive Debian's Chromium with Playwright (never `playwright install`: no browser downloads).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

.PHONY: demo serve check lint types test migration clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "livecommerce needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Only the tests need Node.js (the official JavaScript Socket.IO client checked against the hub) and Chromium.
$(JS_STAMP): tests/hub/js/package-lock.json
	cd tests/hub/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

# Best effort: without apt-get (or sudo) the browser tests say they were skipped and why; under CI=true they fail.
$(CHROMIUM):
	@if command -v apt-get >/dev/null; then \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium < /dev/null || \
		echo "could not install chromium: the browser tests will be skipped"; \
	else echo "no apt-get: install Chromium at $(CHROMIUM) to run the browser tests"; fi

demo: $(STAMP)
	$(BIN)/livecommerce serve --demo --open

serve: $(STAMP)
	$(BIN)/livecommerce serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_docs.py

types: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(JS_STAMP) $(CHROMIUM)
	$(BIN)/pytest -n 2

check: lint types test

# Write the next Alembic revision from the models: make migration m="add orders"
migration: $(STAMP)
	$(BIN)/python -m livecommerce.migrations.autogenerate "$(m)"

clean:
	rm -rf $(VENV) .livecommerce .pytest_cache .mypy_cache .ruff_cache tests/hub/js/node_modules tests/web/artifacts
