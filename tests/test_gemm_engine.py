"""The engines of the whole-sequence GEMMs (W_ih x of all rows, backward's input and weight
gradients): at::mm or the kernels' OpenBLAS, chosen by CPU vendor or FASTRNN_GEMM. The stack
parity tests (bidirectional: gradients accumulated into grad_x; packed input; projections;
gradcheck in float64) run again under each engine in a subprocess, since the choice is made once
per process."""

import os
import subprocess
import sys

import pytest

import fastrnn


def _run(code_or_args, engine):
    env = {**os.environ, "FASTRNN_GEMM": engine}
    return subprocess.run([sys.executable, *code_or_args], env=env, capture_output=True,
                          text=True, cwd=os.path.dirname(__file__))


def test_default_engine():
    assert fastrnn._C.gemm_engine() in ("torch", "openblas")


@pytest.mark.parametrize("engine", ["torch", "openblas"])
def test_stack_matches_reference_on_each_engine(engine):
    reported = _run(["-c", "import fastrnn; print(fastrnn._C.gemm_engine())"], engine)
    assert reported.stdout.strip() == engine, reported.stderr[-3000:]
    run = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_rnn_stack.py"], engine)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout


def test_unknown_engine_is_refused():
    code = ("import torch, fastrnn\n"
            "try:\n"
            "    fastrnn.LSTM(3, 4)(torch.randn(2, 1, 3))\n"
            "except ValueError as e:\n"
            "    print('refused:', e)\n")
    run = _run(["-c", code], "mkl")
    assert "refused: fastrnn: FASTRNN_GEMM must be 'torch' or 'openblas', got 'mkl'" in run.stdout, (
        run.stdout[-3000:] + run.stderr[-3000:])
