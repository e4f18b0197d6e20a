# qcoder-course: `make course` and `make test` are the two commands; each sets up first.
#
# setup    create .venv (unless a conda or virtual environment is already active) and install
#          torch from TORCH_SPEC, then `-e .[dev]`. Idempotent: skipped when already done.
# course   execute every notebook in order on PROFILE (default: auto) and write runs/course/report.md
# test     unit tests (parallel) + nbval over the committed notebooks, on the smoke profile
# notebooks  re-execute the committed notebooks in place on the smoke profile (deliberate)
# lab      open JupyterLab on notebooks/
# student  write student/ copies of the notebooks (nbgrader: solutions stubbed, outputs cleared)
# gpu-check  on a GPU machine: GPU tests + GPU benchmarks, output kept in benchmarks/results/
# bench    run the benchmark scripts (they print ratios; GPU ones say so and exit 0 on CPU)

SHELL := /bin/bash
.DEFAULT_GOAL := help

# torch first, explicitly: a bare `torch` from PyPI is the multi-GB CUDA build on Linux.
# On a CPU-only machine we ask for the CPU build (this machine keeps torch==2.13.0+cpu as a local
# wheel). Override on the command line, e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
#   make setup TORCH_SPEC=torch              # (a GPU machine: the default CUDA build)
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?= torch
else
TORCH_SPEC ?= torch==2.13.0
endif

# An already active conda or virtual environment is reused; otherwise .venv is created.
ifneq ($(strip $(VIRTUAL_ENV)$(CONDA_PREFIX)),)
ACTIVE_ENV := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CONDA_PREFIX))
PY := $(ACTIVE_ENV)/bin/python
STAMP := $(ACTIVE_ENV)/.qcoder-course-installed
else
PY := .venv/bin/python
STAMP := .venv/.qcoder-course-installed
endif
PYSYS ?= python3

PROFILE ?=
RESUME ?=
NB ?=
# Unit tests in parallel where that helps (2 workers on a 2-core machine).
TEST_WORKERS ?= auto

.PHONY: help setup course test unit nbval notebooks lab bench gpu-check student clean

help:
	@echo "make course    # set up if needed, run every notebook, write runs/course/report.md"
	@echo "make test      # set up if needed, unit tests + nbval over the notebooks"
	@echo "make lab | make bench | make notebooks (re-execute committed notebooks, smoke)"
	@echo "make student   # student/ copies of the notebooks: solutions stubbed, outputs cleared"

$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then echo "[setup] creating .venv"; $(PYSYS) -m venv .venv; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[all,dev]"
	@touch $(STAMP)
	@echo "[setup] ready: $(PY)"

setup: $(STAMP)

course: setup
	$(PY) -m qcoder_lib.course run $(if $(PROFILE),--profile $(PROFILE)) $(if $(RESUME),--resume) $(NB)

test: setup
	@start=$$(date +%s); \
	QCODER_PROFILE=smoke $(PY) -m pytest -q -n $(TEST_WORKERS) tests; u=$$?; \
	QCODER_PROFILE=smoke $(PY) -m pytest -q -p no:randomly --nbval \
	  --nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout=1800 \
	  -n $(TEST_WORKERS) --dist loadfile notebooks; n=$$?; \
	echo "[test] unit exit=$$u nbval exit=$$n, $$(( $$(date +%s) - start ))s"; \
	[ $$u -eq 0 ] && [ $$n -eq 0 ]

unit: setup
	QCODER_PROFILE=smoke $(PY) -m pytest -q -n $(TEST_WORKERS) tests

nbval: setup
	QCODER_PROFILE=smoke $(PY) -m pytest -q --nbval --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
	  --nbval-cell-timeout=1800 -n $(TEST_WORKERS) --dist loadfile $(if $(NB),$(wildcard notebooks/$(NB)*.ipynb),notebooks)

notebooks: setup
	$(PY) -m qcoder_lib.course refresh $(NB)

student: setup
	$(PY) -m qcoder_lib.course.student notebooks student

lab: setup
	$(PY) -m jupyter lab notebooks

bench: setup
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

gpu-check: setup
	bash benchmarks/gpu_check.sh

clean:
	rm -rf runs .pytest_cache
