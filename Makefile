# Two commands from a fresh clone (Debian, plain python3):
#   make run    the dashboard on http://localhost:$(PORT)
#   make test   ruff and the whole test suite (what CI runs)
#   make api    the HTTP API on http://$(API_HOST):$(API_PORT) (docs at /docs)
# Everything installs into .venv, so the system Python stays untouched
# (Debian refuses pip installs into it: "externally-managed-environment").

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8501
API_HOST ?= 127.0.0.1
API_PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
# apt-get needs root; elsewhere go through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run api test setup setup-dev chromium clean

run: setup
	$(BIN)/python -m streamlit run streamlit_app.py --server.port $(PORT)

api: setup
	$(BIN)/python -m seg_core.serve --host $(API_HOST) --port $(API_PORT)

test: setup-dev chromium
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

setup: $(VENV)/.runtime-installed
setup-dev: $(VENV)/.dev-installed

# Debian's python3 creates environments only with the python3-venv package (ensurepip).
$(BIN)/python:
	@$(PYTHON) -c "import ensurepip" 2>/dev/null || { \
		echo "installing python3-venv (Debian's python3 needs it for virtual environments)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)

# The marker files are newer than the requirements they installed; editing one reinstalls.
$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt requirements-ray.txt requirements-quantize.txt | $(BIN)/python
	$(PIP) -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

# The browser tests drive Debian's Chromium; they skip themselves without it.
chromium:
	@test -x $(CHROMIUM) || { \
		echo "installing chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache test-artifacts
