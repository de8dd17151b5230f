# Every command the README names lives here; CI runs the same targets.
PYTHON ?= python3
# torch goes in first and on its own: a bare "torch" requirement on a machine
# without one makes pip pull a multi-gigabyte CUDA build. Set TORCH to pick
# another build of it; the default is the version the lock was made with.
TORCH ?= -r requirements/torch.txt
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Everything else comes from the lock, exactly: hashes checked, nothing resolved
# on the spot (--no-deps), and the build backend itself locked (no isolation).
LOCK_DEV := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
PIP_LOCKED := -m pip install --quiet --require-hashes --no-deps

# make wheelhouse / make kit: the Python and platform of the host they are for
PYTHON_VERSION ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PLATFORM ?= manylinux_2_28_x86_64
OUT ?= gpu-check

.PHONY: install test fault-tests lint bench demo services clean lock wheelhouse kit gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK_DEV) requirements/torch.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python $(PIP_LOCKED) -r $(LOCK_DEV)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve the lock after a change to pyproject.toml, keeping every pin that
# still fits; UPGRADE=1 takes the newest releases the ranges allow instead.
LOCK_FLAGS := --universal --python-version 3.10 --fork-strategy fewest --generate-hashes \
	--no-emit-package torch -c requirements/torch.txt --custom-compile-command "make lock" \
	--no-python-downloads --quiet $(if $(UPGRADE),--upgrade)
lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --all-extras $(LOCK_FLAGS) -o $(LOCK_DEV)
	$(BIN)/uv pip compile pyproject.toml -c $(LOCK_DEV) $(LOCK_FLAGS) -o $(LOCK_RUNTIME)

# uv alone, at its locked version: `make lock` must work even when pyproject.toml has moved
# past the lock, where a full install (its pip check) would fail
$(BIN)/uv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ {keep = 1; print; next} keep && /^ / {print; next} {keep = 0}' \
		$(LOCK_DEV) > $(VENV)/uv-lock.txt
	$(BIN)/python $(PIP_LOCKED) -r $(VENV)/uv-lock.txt

test: install
	$(BIN)/python -m pytest

# Every fault test (services restarted, crashed, emptied, a host cut off), not only the
# subset `make test` runs; each prints its timings as a JSON line.
fault-tests: install
	EMBEDQ_FAULTS=all $(BIN)/python -m pytest tests/faults -s

lint: install
	$(BIN)/ruff check embedq tests bench infra
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo --no-cache

bench: install
	$(BIN)/python -m bench.runtime

demo: install
	$(BIN)/python -m embedq.demo

services:
	bash infra/services.sh

# The locked runtime wheels, and embedq's own, for a host with no network.
wheelhouse: install
	$(BIN)/python infra/wheels.py wheelhouse --python-version $(PYTHON_VERSION) \
		--platform $(PLATFORM) --out dist/wheelhouse

# What `make gpu-check` needs on a host that already has torch, transformers and numpy.
kit: install
	$(BIN)/python infra/wheels.py kit --python-version $(PYTHON_VERSION) \
		--platform $(PLATFORM) --out dist/gpu-kit

# On a CUDA host with torch, transformers and numpy: the GPU tests, the runtime and the
# rerank benchmarks, within 7 minutes, into $(OUT). KIT=dir first installs a kit (make kit)
# into $(KIT_SITE), offline; DATA=dir is a copy of ../shared/data; ARGS="--device cpu --smoke"
# runs every code path on a CPU in a minute.
KIT_SITE ?= .cache/gpu-kit-site
gpu-check:
	$(if $(KIT),$(PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --upgrade \
		--target $(KIT_SITE) --find-links $(KIT) --require-hashes -r $(KIT)/requirements.txt)
	$(if $(KIT),PYTHONPATH=$(abspath $(KIT_SITE))$${PYTHONPATH:+:$$PYTHONPATH}) \
		$(PYTHON) -m bench.gpucheck --out $(OUT) $(if $(DATA),--data $(DATA)) $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist
