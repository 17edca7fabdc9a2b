# Quick start: `make bench` (benchmark against torch.nn) and `make test` (the test suite).
# Each creates $(VENV), installs a pinned torch, the build tools, pytest, matplotlib (for the
# bench's --plot), onnx/onnxruntime/onnxscript (for the ONNX export tests) and hypothesis (the fuzz
# test) into it, and builds fastrnn. `make wheel` builds a wheel for that torch into dist/.
# TORCH_SPEC picks the torch, e.g. `make test TORCH_SPEC=torch==2.14.1`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BUILD_DEPS ?= scikit-build-core==1.1.2 pybind11==3.1.0 ninja==1.13.2 cmake==4.4.4 \
              scipy-openblas32==0.3.34.481.3 numpy pytest matplotlib \
              onnx==1.23.1 onnxruntime==1.30.0 onnxscript==0.7.2 hypothesis==6.170.27
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: venv build wheel test bench clean print-torch-spec

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

venv: $(PY)
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(BUILD_DEPS)

# --no-build-isolation: build against the torch installed above, not a different one pip
# would resolve for an isolated build (import fastrnn would then refuse that torch: ABI).
build: venv
	$(PY) -m pip install -q --no-build-isolation --no-deps .

# A wheel of fastrnn for the torch in $(VENV), to install where that same torch is installed.
wheel: venv
	rm -f dist/fastrnn-*.whl
	$(PY) -m pip wheel -q --no-build-isolation --no-deps -w dist .

test: build
	$(PY) -m pytest $(PYTEST_ARGS)

bench: build
	$(PY) -m fastrnn.bench

clean:
	rm -rf build dist $(VENV)

print-torch-spec:
	@echo "$(TORCH_SPEC)"
