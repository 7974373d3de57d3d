# One virtualenv per clone, created on first use. Every target installs what it needs.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: install demo test test-unit lint kcat browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# Debian's kcat: the independent Kafka client the integration tests read topics with.
kcat:
	@command -v kcat >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq kcat >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq kcat >/dev/null; fi; }

# Debian's Chromium and its driver: the real browser the dashboard test (Selenium, headless) opens pages in.
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi; }

# The main job: local stack up, champion trained if missing, every Telco customer scored.
demo: install
	$(BIN)/churn demo --exit

# The whole suite: unit tests and integration tests on a real stack the session starts itself.
test: install kcat browser
	$(BIN)/pytest

# Static checks: lint and format (ruff), types (mypy), layers (import-linter), dead code (vulture).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/vulture

test-unit: install
	$(BIN)/pytest tests/unit

clean:
	-$(BIN)/churn stack down
	rm -rf $(VENV) .churn
