"""The CUDA drivers and kernel bodies (csrc/cuda/driver.h, kernels.cuh, persistent.cuh), run on
the CPU under host emulation (fastrnn.cuda_emulation()), against fastrnn.reference, torch.nn and
the CPU drivers: every cell and option, packed, bidirectional, dropout, projection, clipping,
recorded norms, gradcheck in float64 and opcheck, on both CUDA paths (persistent: cooperative
kernels; alternating: a GEMM and a kernel per step); each test proves from the emulator's counts
that the emulated path it asked for ran. The persistent path runs on an emulated device of 3 SMs
(blocks of several hidden units, a last block with fewer) unless a test says otherwise; then the
heuristic of csrc/cuda/plan.h (fastrnn.emulation.cuda_path_plan) and its refusals."""

import os
import subprocess
import sys

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import op_args, stack_args
from test_clipping import _cases as clipping_cases
from test_grad_norms import _cases as norms_cases
from test_grad_norms import test_recorded_norms_match_reference_hooks as check_norms
from test_rnn_stack import _cases as stack_cases
from test_rnn_stack import assert_matches_reference, gradcheck_args, outputs_and_grads


PATHS = ("persistent", "alternating")
PERSISTENT_SMS = 3  # the emulated SMs of the persistent path's tests


def emulated(fn, *args, path="persistent", sms=None, cooperative=None, **kwargs):
    """fn(*args, **kwargs) under cuda_emulation(path=...); asserts that kernels and GEMMs ran
    there, none of them 16-bit ones (the stacks here are float32 and float64), and cooperative
    launches (the persistent path) exactly where it was forced: `cooperative` of them when
    given."""
    if path == "persistent" and sms is None:
        sms = PERSISTENT_SMS
    with fastrnn.cuda_emulation(path=path, sms=sms) as stats:
        result = fn(*args, **kwargs)
    assert stats.launches > 0 and stats.gemms > 0 and stats.half_gemms == 0, stats
    if path == "alternating":
        assert stats.cooperative_launches == 0, stats
    elif path == "persistent":
        assert stats.cooperative_launches > 0, stats
    if cooperative is not None and path != "alternating":
        assert stats.cooperative_launches == cooperative, stats
    return result


def kernels_per_call(config):
    """Cooperative launches of a forward and backward of a stack_args config: one per layer and
    direction each."""
    return 2 * config.get("num_layers", 2) * (2 if config.get("bidirectional", True) else 1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(stack_cases()), ids=config_ids)
def test_emulated_stack_matches_reference(mode, config, dtype, path):
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    emulated(assert_matches_reference, args, kwargs, path=path,
             cooperative=kernels_per_call(config))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(clipping_cases()), ids=config_ids)
def test_emulated_clipping_matches_reference(mode, config, dtype, path):
    config = dict(config)
    options = {k: config.pop(k) for k in ("grad_clip", "cell_clip") if k in config}
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    emulated(assert_matches_reference, args, kwargs | options, path=path,
             cooperative=kernels_per_call(config))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode,config", list(norms_cases()), ids=config_ids)
def test_emulated_grad_norms_match_reference(mode, config, path, monkeypatch):
    emulated(check_norms, mode, config, torch.float32, monkeypatch, path=path)


@pytest.mark.parametrize("mode,config", [
    ("lstm", dict(packed=True, proj_size=3)),
    ("lstm", dict(hx=False, bias=False)),
    ("gru", dict(packed=True, masks=True)),
    ("rnn_tanh", dict(num_layers=1)),
    ("rnn_relu", dict(packed=True, bidirectional=False)),
], ids=config_ids)
def test_emulated_persistent_one_unit_per_block(mode, config):
    # the emulated A100's own 108 SMs: a block per hidden unit (and per projected unit)
    for dtype in DTYPES:
        args, kwargs = stack_args(mode, dtype=dtype, **config)
        emulated(assert_matches_reference, args, kwargs, path="persistent", sms=108,
                 cooperative=kernels_per_call(config))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_emulated_matches_cpu_drivers(mode, path):
    # same values, both drivers in float64: equal to rounding (another order of sums)
    args, kwargs = stack_args(mode, num_layers=2, packed=True, masks=True,
                              proj_size=3 if mode == "lstm" else 0)
    cpu = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    gpu = emulated(outputs_and_grads, fastrnn.functional.rnn_stack, args, kwargs, path=path)
    for a, b in zip([*cpu[0], *cpu[1]], [*gpu[0], *gpu[1]]):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=1e-13)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode,config", [
    ("lstm", dict(packed=True, proj_size=2, masks=True)),
    ("gru", dict(num_layers=2, bidirectional=True)),
    ("rnn_tanh", dict(packed=True, hx=False)),
    ("rnn_relu", dict(bias=False, num_layers=1)),
], ids=config_ids)
def test_emulated_gradcheck(mode, config, path):
    args, kwargs = stack_args(mode, T=3, B=2, I=3, H=3, **config)
    assert emulated(torch.autograd.gradcheck, *gradcheck_args(args, kwargs), path=path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_emulated_opcheck(mode, path):
    args, kwargs = stack_args(mode, T=3, B=2, I=5, H=4, num_layers=2, bidirectional=True,
                              packed=True)
    results = emulated(torch.library.opcheck, torch.ops.fastrnn.rnn.default,
                       op_args(args, kwargs, True), path=path)
    assert all(result == "SUCCESS" for result in results.values()), results


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_emulated_modules_match_torch_nn(cls, path):
    torch.manual_seed(0)
    kwargs = {} if "Cell" in cls else dict(num_layers=2, bidirectional=True, batch_first=True)
    ours = getattr(fastrnn, cls)(5, 7, **kwargs).double()
    theirs = getattr(torch.nn, cls)(5, 7, **kwargs).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64) if "Cell" in cls else \
        torch.randn(3, 4, 5, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    out = first(emulated(ours, x1, path=path))
    expected = first(theirs(x2))
    torch.testing.assert_close(out, expected, atol=1e-13, rtol=1e-13)
    emulated(lambda: out.square().sum().backward(), path=path)
    expected.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-13, rtol=1e-13)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-13, rtol=1e-13, msg=name)


def test_emulation_is_off_outside_the_block():
    x = torch.randn(3, 2, 4)
    settings = fastrnn._C._cuda_emulation_settings()
    with fastrnn.cuda_emulation(path="alternating", device="h100", sms=5):
        pass
    with fastrnn.cuda_emulation() as stats:
        pass
    fastrnn.LSTM(4, 5)(x)
    assert stats.launches == 0 and not fastrnn._C._cuda_emulation()
    assert stats.cooperative_launches == 0
    assert fastrnn._C._cuda_emulation_settings() == settings


# ---- the emulated GEMM (exec.gemm, csrc/cuda/emulator.cpp) ---------------------------------

@pytest.mark.parametrize("trans_b", [False, True], ids=["B", "Bt"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["A", "At"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64],
                         ids=str)
def test_emulated_gemm_follows_cublas_convention(dtype, trans_a, trans_b):
    # C[m, n] = op(A)[m, k] op(B)[k, n] + beta C, column-major (X[i, j] at X[i + j * ld], ld
    # past the rows), against float64 on the same values: bfloat16 and float16 operands (C
    # float32) multiplied exactly and summed in float32; C read only where beta != 0
    gen = torch.Generator().manual_seed(2)
    m, n, k, pad = 5, 7, 33, 3
    out = torch.float64 if dtype == torch.float64 else torch.float32

    def stored(rows, cols, dt):
        """A column-major rows x cols matrix, ld = rows + pad: the storage (row-major [cols, ld])
        and the matrix in float64."""
        storage = torch.randn(cols, rows + pad, generator=gen).to(dt)
        return storage, storage[:, :rows].T.double().clone()

    a, A = stored(k, m, dtype) if trans_a else stored(m, k, dtype)
    b, B = stored(n, k, dtype) if trans_b else stored(k, n, dtype)
    op_a, op_b = (A.T if trans_a else A), (B.T if trans_b else B)
    for beta in (0.0, 0.5):
        c, C = stored(m, n, out)
        if beta == 0:
            c[:, :m] = float("nan")  # not read
        before = c.clone()
        fastrnn._C._emulated_gemm(trans_a, trans_b, m, n, k, a, a.shape[1], b, b.shape[1], beta,
                                  c, c.shape[1])
        want = op_a @ op_b + (beta * C if beta else 0)
        bound = k * torch.finfo(out).eps * ((op_a.abs() @ op_b.abs()).max() + beta * C.abs().max())
        assert (c[:, :m].T.double() - want).abs().max() <= bound
        assert torch.equal(c[:, m:], before[:, m:])  # past the rows: untouched


# ---- the emulated tensor-core tile product (ctx.mma_tile, csrc/cuda/emulator.cpp) ---------

def _tf32(x):
    """float32 -> TF32 as cvt.rna.tf32.f32: 10 mantissa bits, nearest, ties away from zero."""
    bits = x.float().view(torch.int32)
    rounded = ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
    return torch.where(x.isfinite(), rounded, x.float())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
def test_mma_tile_is_the_product_of_the_rounded_operands(dtype):
    # acc += a b^T: 16-bit operands exact, float32 ones rounded to TF32; float32 accumulation
    gen = torch.Generator().manual_seed(1)
    k = 48
    a = torch.randn(16, k, generator=gen).to(dtype)
    b = torch.randn(16, k, generator=gen).to(dtype)
    acc = torch.randn(16, 16, generator=gen)
    rounded = (lambda t: _tf32(t).double()) if dtype == torch.float32 else (lambda t: t.double())
    want = acc.double() + rounded(a) @ rounded(b).T
    got = acc.clone()
    fastrnn._C._emulated_mma_tile(a, b, got)
    bound = k * torch.finfo(torch.float32).eps * (acc.abs().max() + (rounded(a).abs() @
                                                                     rounded(b).abs().T).max())
    assert (got.double() - want).abs().max() <= bound
    if dtype == torch.float32:  # the operands' rounding shows: far from the float32 product
        exact = acc.double() + a.double() @ b.double().T
        assert (got.double() - exact).abs().max() > 10 * bound


def test_mma_tile_rounds_tf32_to_nearest_ties_away():
    # halfway between two TF32 values rounds away from zero (1 + 2^-11 between 1 and 1 + 2^-10,
    # 1 + 3 * 2^-11 between 1 + 2^-10 and 1 + 2^-9); just below halfway rounds down
    one = 1.0 + 2.0 ** -10  # the TF32 value after 1
    xs = torch.tensor([1 + 2.0 ** -11, -(1 + 2.0 ** -11), 1 + 2.0 ** -11 - 2.0 ** -23,
                       one + 2.0 ** -11, 3.0e38, 1e-40])
    want = torch.tensor([one, -one, 1.0, 1 + 2.0 ** -9, _tf32(torch.tensor(3.0e38)).item(),
                         _tf32(torch.tensor(1e-40)).item()])
    a = torch.zeros(16, 16)
    b = torch.zeros(16, 16)
    a[: len(xs), 0] = xs
    b[0, 0] = 1.0
    got = torch.zeros(16, 16)
    fastrnn._C._emulated_mma_tile(a, b, got)
    assert torch.equal(got[: len(xs), 0], want)


def test_mma_tile_is_warp_collective():
    a = torch.ones(16, 16, dtype=torch.bfloat16)
    acc = torch.zeros(16, 16)
    fastrnn._C._emulated_mma_tile(a, a, acc, lanes=32)
    assert torch.equal(acc, torch.full((16, 16), 16.0))
    for lanes in (1, 31):
        with pytest.raises(RuntimeError, match="needs all 32 threads of the warp"):
            fastrnn._C._emulated_mma_tile(a, a, torch.zeros(16, 16), lanes=lanes)
    with pytest.raises(RuntimeError, match="break wmma's rules"):  # k not a multiple of 16
        fastrnn._C._emulated_mma_tile(a[:, :8].contiguous(), a[:, :8].contiguous(),
                                      torch.zeros(16, 16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_emulated_persistent_tile_products_run(mode, dtype):
    # which product ran: tiles for the 16-bit types and for float32 with TF32 allowed, none for
    # float32 without it and for float64
    kwargs = {"nonlinearity": mode.removeprefix("rnn_")} if mode.startswith("rnn_") else {}
    m = getattr(fastrnn, {"lstm": "LSTM", "gru": "GRU"}.get(mode, "RNN"))(4, 8, **kwargs)
    x = torch.randn(3, 2, 4)
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for dt in (dtype, torch.float64):
                with fastrnn.cuda_emulation(path="persistent", sms=3) as stats:
                    out, _ = m.to(dt)(x.to(dt))
                    out.float().sum().backward()
                on = dt != torch.float64 and (dt != torch.float32 or tf32)
                assert stats.cooperative_launches == 2, stats
                assert (stats.mma_tiles > 0) == on, (dt, tf32, stats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_emulated_tf32_follows_torchs_new_precision_api_too():
    # torch.backends.cuda.matmul.fp32_precision ("tf32" / "ieee") is the same switch
    m = fastrnn.GRU(4, 8)
    x = torch.randn(3, 2, 4)
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        for precision, on in (("tf32", True), ("ieee", False)):
            torch.backends.cuda.matmul.fp32_precision = precision
            with fastrnn.cuda_emulation(path="persistent", sms=3) as stats:
                m(x)
            assert (stats.mma_tiles > 0) == on, (precision, stats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before  # sets both of torch's flags


# ---- the heuristic (csrc/cuda/plan.h) ------------------------------------------------------

plan = fastrnn.emulation.cuda_path_plan


def test_plan_small_batch_is_persistent_one_unit_per_sm():
    p = plan("lstm", batch=4, hidden=7)
    assert p["path"] == "persistent" and p["fits"]
    assert (p["blocks"], p["units"], p["threads"]) == (7, 1, 32)
    assert p["shared_bytes"] == 4 * 1 * 7 * 4  # G x units rows of W_hh, P wide, float32
    p = plan("lstm", batch=4, hidden=7, sms=3)
    assert (p["blocks"], p["units"], p["proj_units"]) == (3, 3, 3)


def test_plan_units_spread_over_the_sms():
    p = plan("gru", batch=32, hidden=1024)  # A100: 108 SMs
    assert p["path"] == "persistent"
    assert (p["units"], p["blocks"], p["threads"]) == (10, 103, 256)
    assert p["shared_bytes"] == 3 * 10 * 1024 * 4
    p = plan("gru", batch=32, hidden=1024, device="h100")  # 132 SMs
    assert (p["units"], p["blocks"]) == (8, 128)


def test_plan_projection_and_backward_shared_memory():
    f = plan("lstm", batch=2, hidden=200, proj_size=50, sms=10, dtype=torch.float64)
    b = plan("lstm", batch=2, hidden=200, proj_size=50, sms=10, dtype=torch.float64,
             backward=True)
    assert (f["units"], f["proj_units"], f["blocks"]) == (20, 5, 10)
    assert f["shared_bytes"] == (4 * 20 * 50 + 5 * 200) * 8  # W_hh rows, W_hr rows
    assert b["shared_bytes"] == (5 * 4 * 200 + 20 * 50) * 8  # W_hh columns, W_hr columns


def test_plan_tensor_cores_and_their_shared_memory():
    # the 16-bit types always, float32 as TF32 where allowed, float64 never
    assert plan("lstm", batch=4, hidden=7, dtype=torch.bfloat16)["tensor_cores"]
    assert plan("lstm", batch=4, hidden=7, dtype=torch.float16, allow_tf32=False)["tensor_cores"]
    assert not plan("lstm", batch=4, hidden=7, allow_tf32=False)["tensor_cores"]
    assert plan("lstm", batch=4, hidden=7, allow_tf32=True)["tensor_cores"]
    assert not plan("lstm", batch=4, hidden=7, dtype=torch.float64,
                    allow_tf32=True)["tensor_cores"]
    # one unit per block: its 4 W_hh rows, 7 wide, padded to a 16 x 16 tile; the staged 16 x 128
    # operand; the 16 x 16 float accumulators
    p = plan("lstm", batch=4, hidden=7, dtype=torch.bfloat16)
    assert p["shared_bytes"] == (16 * 16 + 16 * 128) * 2 + 16 * 16 * 4
    t = plan("lstm", batch=4, hidden=7, allow_tf32=True)
    assert t["shared_bytes"] == (16 * 16 + 16 * 128) * 4 + 16 * 16 * 4
    # backward with a projection: 5 h units' W_hh columns (G*H = 800 tall) padded to 16 x 800,
    # 20 units' W_hr columns (50 tall) to 32 x 64
    b = plan("lstm", batch=2, hidden=200, proj_size=50, sms=10, dtype=torch.float16,
             backward=True)
    assert b["shared_bytes"] == (16 * 800 + 32 * 64 + 16 * 128) * 2 + 16 * 32 * 4


def test_plan_16_bit_weights_fit_where_float32_ones_do_not():
    # bfloat16 W_hh in shared memory: half float32's bytes, so H=1100 (11 units per block on an
    # A100) stays on the persistent path
    assert plan("lstm", batch=1, hidden=1100, allow_tf32=False)["path"] == "alternating"
    for backward in (False, True):
        p = plan("lstm", batch=1, hidden=1100, dtype=torch.bfloat16, backward=backward)
        assert p["path"] == "persistent" and p["tensor_cores"], p


def test_plan_large_batch_is_alternating_unless_forced():
    assert plan("lstm", batch=33, hidden=64)["path"] == "alternating"
    assert plan("lstm", batch=32, hidden=64)["path"] == "persistent"
    assert plan("lstm", batch=64, hidden=64, path="persistent")["path"] == "persistent"
    assert plan("lstm", batch=4, hidden=64, path="alternating")["path"] == "alternating"


def test_plan_falls_back_when_the_weights_do_not_fit_on_chip():
    # float32 LSTM, H=1100: 11 units per block on an A100 need 189 KiB of shared memory (163
    # KiB there); 9 per block on an H100 need 155 KiB (227 KiB there)
    a100 = plan("lstm", batch=1, hidden=1100)
    assert a100["path"] == "alternating" and not a100["fits"]
    assert a100["shared_bytes"] > a100["shared_per_block"]
    assert plan("lstm", batch=1, hidden=1100, device="h100")["path"] == "persistent"
    # float64 doubles the bytes: H=1024 fits in float32, not in float64
    assert plan("lstm", batch=1, hidden=1024)["path"] == "persistent"
    assert plan("lstm", batch=1, hidden=1024, dtype=torch.float64)["path"] == "alternating"


def test_plan_forced_persistent_that_cannot_be_resident_raises():
    with pytest.raises(RuntimeError, match="cannot be co-resident on a100"):
        plan("lstm", batch=1, hidden=1100, path="persistent")


def test_forced_persistent_that_cannot_be_resident_raises_in_the_driver():
    # one emulated SM: all 200 units' W_hh rows in one block, 1.25 MiB of float64
    args, kwargs = stack_args("lstm", T=2, B=1, I=2, H=200, num_layers=1, bidirectional=False)
    with fastrnn.cuda_emulation(path="persistent", sms=1) as stats:
        with pytest.raises(RuntimeError, match="persistent CUDA path was forced"):
            fastrnn.functional.rnn_stack(*args, **kwargs)
    assert stats.cooperative_launches == 0
    with fastrnn.cuda_emulation(sms=1) as stats:  # auto: the alternating path
        assert_matches_reference(args, kwargs)
    assert stats.cooperative_launches == 0 and stats.launches > 0


def test_auto_picks_persistent_for_small_sizes():
    config = dict(T=3, B=2, H=5, num_layers=1, bidirectional=False)
    args, kwargs = stack_args("gru", **config)
    emulated(assert_matches_reference, args, kwargs, path="auto", cooperative=2)


@pytest.mark.parametrize("value,cooperative", [("alternating", False), ("persistent", True)])
def test_environment_variable_picks_the_path(value, cooperative):
    code = ("import torch, fastrnn\n"
            "x = torch.randn(3, 2, 4)\n"
            "with fastrnn.cuda_emulation(sms=3) as stats:\n"
            "    fastrnn.GRU(4, 5)(x)[0].sum().backward()\n"
            "print(stats.cooperative_launches)\n")
    env = os.environ | {"FASTRNN_CUDA_PATH": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert (int(out) > 0) == cooperative, out


def test_bad_path_names_raise():
    with pytest.raises(ValueError, match="path must be one of"):
        with fastrnn.cuda_emulation(path="fast"):
            pass
    with pytest.raises(ValueError, match="device must be one of"):
        with fastrnn.cuda_emulation(device="v100"):
            pass
    with pytest.raises(ValueError, match="sms must be"):
        with fastrnn.cuda_emulation(sms=0):
            pass
    code = ("import torch, fastrnn\n"
            "with fastrnn.cuda_emulation():\n"
            "    fastrnn.GRU(4, 5)(torch.randn(3, 2, 4))\n")
    env = os.environ | {"FASTRNN_CUDA_PATH": "fast"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "FASTRNN_CUDA_PATH (or cuda_emulation's path) is 'fast'" in result.stderr
