"""The CUDA drivers on a real GPU (skipped without one): fastrnn's ops on CUDA tensors against
the same ops on the CPU, outputs and every gradient. The drivers serve CUDA tensors only under
FASTRNN_EXPERIMENTAL_CUDA=1 until this file has passed on a GPU (.ci/gpu-check runs it so)."""

import os

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import stack_args
from test_rnn_stack import _cases as stack_cases
from test_rnn_stack import outputs_and_grads

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("FASTRNN_EXPERIMENTAL_CUDA") != "1"
    or not fastrnn.built_with_cuda(),
    reason="needs a GPU, a CUDA build and FASTRNN_EXPERIMENTAL_CUDA=1")


def to_cuda(args, kwargs):
    def move(t):
        if not isinstance(t, torch.Tensor) or t.dtype == torch.int64:
            return t
        return t.detach().cuda().requires_grad_(t.requires_grad)
    mode, input, batch_sizes, h0, c0, weights = args
    return ((mode, move(input), batch_sizes, move(h0), move(c0), [move(w) for w in weights]),
            kwargs | {"dropout_masks": move(kwargs["dropout_masks"])})


def _cases():
    yield from stack_cases()
    for mode in CELL_NAMES:
        yield mode, dict(num_layers=2, grad_clip=0.05)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_cases()), ids=config_ids)
def test_cuda_matches_cpu(mode, config, dtype):
    config = dict(config)
    options = {k: config.pop(k) for k in ("grad_clip",) if k in config}
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    cpu = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs | options)
    gpu = outputs_and_grads(fastrnn.functional.rnn_stack, *to_cuda(args, kwargs | options))
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # TF32 off: torch's default for matmul
    for a, b in zip([*cpu[0], *cpu[1]], [*gpu[0], *gpu[1]]):
        assert b.is_cuda
        torch.testing.assert_close(b.cpu(), a, atol=tol, rtol=tol)
