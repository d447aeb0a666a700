# One-command set-up: `make demo` runs the demo, `make test` runs every test (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup engines demo test lint unit e2e engines-test bench bundle clean

setup: $(VENV)/.installed .cache/.chromium .cache/pyauth-web/.vendored tests/oidc/node_modules/.installed \
	tools/jscheck/node_modules/.installed

# The other two engines of the cross-engine scenarios (tests/e2e/engines), installed like Chromium:
# Debian's Firefox ESR (driven by puppeteer-core, npm, pinned) and WebKitGTK's WebDriver with Xvfb
# (driven by selenium, PyPI, pinned in pyproject.toml). ../shared/notes/cross-engine.md: why these.
engines: .cache/.engines tests/e2e/engines/firefox/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q hatchling
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian's Chromium (Playwright cannot download its own browser on this network).
.cache/.chromium:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	mkdir -p .cache && touch $@

.cache/.engines:
	command -v firefox-esr >/dev/null && command -v WebKitWebDriver >/dev/null && command -v Xvfb >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  firefox-esr webkit2gtk-driver xvfb >/dev/null; }
	mkdir -p .cache && touch $@

tests/e2e/engines/firefox/node_modules/.installed: tests/e2e/engines/firefox/package-lock.json
	cd tests/e2e/engines/firefox && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Pinned Pyodide (npm package) and wheels (PyPI), kept in .cache/ (git-ignored).
.cache/pyauth-web/.vendored: $(VENV)/.installed
	$(BIN)/pyauth-web vendor
	touch $@

# The real OpenID Provider the e2e tests run (npm package oidc-provider, pinned by the lock file).
tests/oidc/node_modules/.installed: tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# TypeScript's checker for sw/sw.js and web/pyauth-web.js (npm package typescript, pinned).
tools/jscheck/node_modules/.installed: tools/jscheck/package-lock.json
	cd tools/jscheck && npm ci --no-audit --no-fund --loglevel=error
	touch $@

TSC := tools/jscheck/node_modules/.bin/tsc --noEmit --allowJs --checkJs --target es2022 --skipLibCheck

demo: setup
	$(BIN)/pyauth-web demo

lint: setup
	$(BIN)/ruff check pyauth_web tests benchmarks
	$(BIN)/mypy
	$(TSC) --lib es2022,webworker sw/sw.js
	$(TSC) --lib es2022,dom web/pyauth-web.js

unit: setup
	$(BIN)/pytest -q tests/unit

e2e: setup engines
	$(BIN)/pytest -q tests/e2e

# Only the user stories, in the three engines.
engines-test: setup engines
	$(BIN)/pytest -q tests/e2e/engines

test: lint engines
	$(BIN)/pytest -q -p no:cacheprovider tests/unit tests/e2e

bench: setup engines
	$(BIN)/python benchmarks/bench.py

bundle: setup
	$(BIN)/pyauth-web bundle out/

clean:
	rm -rf $(VENV) .cache build dist out
