# Every command the README names lives here; CI runs the same targets.
PYTHON ?= python3
# torch goes in first and on its own: a bare "torch" requirement on a machine
# without one makes pip pull a multi-gigabyte CUDA build.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint bench demo services clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check embedq tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.runtime

demo: install
	$(BIN)/python -m embedq.demo

services:
	bash infra/services.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
