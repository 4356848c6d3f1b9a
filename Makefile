# Flotilla: the two commands are `make up` and `make test`; everything installs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# Every package's folder, from services.toml (the one list of services).
PACKAGES := $(shell $(PYTHON) tools/service_folders.py)
ifeq ($(PACKAGES),)
$(error services.toml gave no package folders: tools/service_folders.py needs $(PYTHON) >= 3.11)
endif
EDITABLES := $(foreach p,$(PACKAGES),-e $(p))
STAMP := $(VENV)/.installed
PYPROJECTS := $(foreach p,$(PACKAGES),$(p)/pyproject.toml)

.PHONY: install browser up down status demo test test-fast test-containers lint format bench clean constraints help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install every package (editable) with pinned versions

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS) $(shell find proto -name '*.proto')
	@echo "==> creating $(VENV) and installing pinned dependencies"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	@# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every process
	@# would otherwise compile every imported module again, doubling start-up time.
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode \
		--constraint constraints.txt --requirement requirements-dev.txt $(EDITABLES)
	PYTHON=$(abspath $(BIN)/python) proto/generate.sh
	@touch $@

# The browser tests (tests/browser) drive Debian's Chromium through Playwright by its path
# (never `playwright install`: no browser download); certutil gives that Chromium the dev CA.
BROWSER_PACKAGES := chromium libnss3-tools
BROWSER_FIX := apt-get install -y $(BROWSER_PACKAGES)

browser: ## Debian's chromium and certutil for tests/browser (apt-get as root; else says how)
	@if command -v chromium >/dev/null && command -v certutil >/dev/null; then exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && sudo="sudo -n"; } || sudo=none; \
	if [ "$$sudo" != none ] && command -v apt-get >/dev/null; then \
		echo "==> installing $(BROWSER_PACKAGES) for the browser tests (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo $(BROWSER_FIX) || { $$sudo apt-get update && $$sudo $(BROWSER_FIX); } \
		|| echo "==> apt-get could not install $(BROWSER_PACKAGES): the browser tests will be skipped; fix apt, then run: $(BROWSER_FIX)"; \
	else \
		echo "==> the browser tests need Debian's $(BROWSER_PACKAGES) and will be skipped: as root, run: $(BROWSER_FIX)"; \
	fi

up: install ## run the whole system (Ctrl-C stops it)
	$(BIN)/flotilla up

down: install ## stop a system started with --detach
	$(BIN)/flotilla down

test: install browser ## run every test: unit, integration (SQLite + PostgreSQL), e2e, browser
	$(BIN)/pytest

test-fast: install ## unit tests only
	$(BIN)/pytest -m "not e2e and not postgres" libs services cli

test-containers: install ## build the images, run compose.yaml on podman (tests/containers)
	$(BIN)/pytest tests/containers

lint: install ## ruff + mypy --strict + the layer rules (import-linter, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(foreach p,$(filter-out proto,$(PACKAGES)),$(p)/src $(p)/tests) tests bench tools deploy
	@# --no-cache: the whole graph takes well under a second, and no cache folder is left behind
	$(BIN)/lint-imports --no-cache --no-logo

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## run the benchmarks (tables + JSON under bench/results/)
	$(BIN)/flotilla bench startup --json bench/results/startup.json
	tools/bench-tools.sh
	$(BIN)/flotilla bench cost --json bench/results/cost-sqlite.json
	$(BIN)/flotilla bench cost --db postgres --json bench/results/cost-postgres.json
	$(BIN)/flotilla bench gateway --json bench/results/gateway.json
	$(BIN)/flotilla bench stacks --json bench/results/stacks.json
	$(BIN)/flotilla bench inventory --json bench/results/inventory.json

constraints: ## re-pin every dependency into constraints.txt (needs the index), then Poetry's copies
	tools/pin-constraints.sh $(PACKAGES)
	$(MAKE) install
	$(BIN)/python tools/poetry_pins.py --write

clean: ## remove run-time state and caches (not the venv)
	-$(BIN)/flotilla down 2>/dev/null
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench/results
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
