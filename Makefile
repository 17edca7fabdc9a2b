# Quick start: `make bench` (benchmark against torch.nn) and `make test` (the test suite).
# Each creates $(VENV), installs a pinned torch, the build tools, pytest and matplotlib (for the
# bench's --plot) into it, and builds fastrnn.
# TORCH_SPEC picks the torch, e.g. `make test TORCH_SPEC=torch==2.14.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BUILD_DEPS ?= scikit-build-core==1.1.2 pybind11==3.1.0 ninja==1.13.2 cmake==4.4.4 \
              scipy-openblas32==0.3.34.481.3 numpy pytest matplotlib
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv build test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(BUILD_DEPS)

# --no-build-isolation: build against the torch installed above, not a different one pip
# would resolve for an isolated build (the wheel would then fail at import: ABI).
build: venv
	$(PY) -m pip install -q --no-build-isolation --no-deps .

test: build
	$(PY) -m pytest $(PYTEST_ARGS)

bench: build
	$(PY) -m fastrnn.bench

clean:
	rm -rf build $(VENV)
