# calo: make help lists the targets.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
STORE := $(CURDIR)/mlruns
SERVICES := $(CURDIR)/services
# make test runs its tests in this many processes (pytest-xdist): much of a test's time is
# spent starting Python and TensorFlow in subprocesses, which overlaps well even on 2 cores.
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install run test test-full test-cluster bench report results ui services services-stop lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(INSTALLED)  ## create .venv and install the project (done by every target)

run: $(INSTALLED)  ## the main job on the built-in defaults, logged to mlruns/
	$(PY) -m calo.run

test: $(INSTALLED)  ## the test suite (tiny models), without the cluster's; CI runs both
	$(PY) -m pytest -m "not slow and not cluster" -n $(TEST_WORKERS) --dist worksteal --durations=15

test-cluster: $(INSTALLED)  ## the cluster tests: PostgreSQL, MLflow server, one-node SLURM
	$(PY) -m pytest -m "cluster and not slow"

test-full: $(INSTALLED)  ## every test, the slow full-size and JAX ones too
	$(PY) -m pip install --quiet -e ".[dev,jax]"
	$(PY) -m pytest

bench: $(INSTALLED)  ## full-size generator, every precision, this machine: one table -> mlruns/
	$(PY) -m calo.bench

report: $(INSTALLED)  ## the comparison report of the latest sweep: make report ARGS="--experiment paper_tables"
	$(PY) -m calo.report $(ARGS)

results: $(INSTALLED)  ## the result tables and figures of README.md and docs/ from mlruns/
	$(PY) -m calo.report --readme

ui: $(INSTALLED)  ## the MLflow UI on http://127.0.0.1:5000 over mlruns/
	mkdir -p $(STORE)
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
		--backend-store-uri sqlite:///$(STORE)/mlflow.db --default-artifact-root $(STORE)/artifacts

services: $(INSTALLED)  ## PostgreSQL + an MLflow server on it, in services/ (ARGS="--slurm" adds SLURM)
	$(PY) -m calo.services start --folder $(SERVICES) $(ARGS)

services-stop: $(INSTALLED)  ## stop what make services started (the data stays in services/)
	$(PY) -m calo.services stop --folder $(SERVICES)

lint: $(INSTALLED)  ## ruff over the code
	$(VENV)/bin/ruff check calo tests

clean:  ## remove caches and Hydra outputs (keeps mlruns/ and .venv)
	rm -rf outputs multirun .pytest_cache data/cache
