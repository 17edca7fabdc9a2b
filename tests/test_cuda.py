"""The CUDA drivers on a real GPU (skipped without one): fastrnn's ops on CUDA tensors against
the same ops on the CPU, outputs and every gradient. The drivers serve CUDA tensors only under
FASTRNN_EXPERIMENTAL_CUDA=1 until this file has passed on a GPU (.ci/gpu-check runs it so). At the
end, the GPU benchmark on the device: what ran (cuDNN, fastrnn's op) and a small gpu-quick run."""

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


# ---- the GPU benchmark on the device (python -m fastrnn.bench --device cuda) -----------------
def test_bench_sees_cudnn_and_fastrnn_run():
    from fastrnn.bench.workloads import CUDNN_OP, FASTRNN_OP, IMPLS, Case, make_workload, ops_run
    workload = make_workload(Case("lstm", 5, 3, 16, 16), torch.float32, seed=0, device="cuda")
    ops = {impl: ops_run(IMPLS[impl](workload), workload)
           for impl in ("torch", "torch-native", "fastrnn")}
    assert CUDNN_OP in ops["torch"] and CUDNN_OP not in ops["torch-native"]
    assert FASTRNN_OP in ops["fastrnn"] and CUDNN_OP not in ops["fastrnn"]


def test_bench_gpu_preset_times_fastrnn_on_the_device(tmp_path):
    """The gpu-quick preset at a small shape: every case and dtype timed for torch and
    torch-native; fastrnn timed through its op wherever it takes the dtype, else listed as not
    run with its op's reason; every parity check passes."""
    import json
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "fastrnn.bench", "--preset", "gpu-quick",
                           "--T", "5", "--B", "3", "--I", "256", "--H", "256", "--repeats", "2",
                           "--warmup", "1", "--no-peak", "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FASTRNN_EXPERIMENTAL_CUDA=1" in proc.stdout and "tf32      off" in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert [c["dtype"] for c in data["configs"]] == ["float32", "bfloat16"]
    assert data["checks"] and all(c["ok"] for c in data["checks"])
    results, not_run = data["results"], data["not_run"]
    cases = {(r["dtype"], r["cell"], r["bidirectional"], r["packed"], r["proj_size"])
             for r in results}
    assert len(cases) == 2 * 8  # per dtype: 3 cells padded, 2 packed, 2 bidirectional, 1 proj
    for dtype, cell, bidirectional, packed, proj_size in cases:
        impls = {r["impl"]: r for r in results if (r["dtype"], r["cell"], r["bidirectional"],
                                                    r["packed"], r["proj_size"]) ==
                 (dtype, cell, bidirectional, packed, proj_size) and r["mode"] == "train"}
        assert {"torch", "torch-native"} <= set(impls)
        assert impls["torch-native"]["via"] == "ATen"
        if dtype == "float32":
            assert impls["torch"]["via"] == "cuDNN" and impls["fastrnn"]["via"] == "kernels"
        if "fastrnn" not in impls:
            assert any(n["impl"] == "fastrnn" and n["dtype"] == dtype and
                       n["reason"].startswith("fastrnn:") for n in not_run)
    assert all(r["median_ms"] > 0 and r["gbps"] > 0 for r in results)
