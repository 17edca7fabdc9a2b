"""bfloat16 and float16 on the CPU: the kernels keep the state, the gate math and every sum in
float32 and store what leaves a layer in the input's dtype (csrc/cells/rows.h).

Error budget (issue 19; tolerances.half_budget): each output and each gradient of fastrnn in a
16-bit dtype errs, against float64 on the same rounded values, by at most twice what torch.nn
errs in that dtype on the same values (or one rounding of the dtype, whichever is larger). Where
torch.nn cannot run a case (fastrnn's cell options, explicit dropout masks), fastrnn.reference
run in the 16-bit dtype stands in for it: the same equations, each op of PyTorch rounding to
that dtype as torch.nn's own 16-bit paths do."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence

import fastrnn
from module_helpers import CLASS_NAMES, stack_args, op_args
from tolerances import TOLERANCES, half_budget, relative_error

HALF = (torch.bfloat16, torch.float16)


def _rounded(args, kwargs, dtype):
    """The stack's tensors rounded to dtype, as fresh leaves in dtype and in float64 (the same
    values)."""
    def split(t):
        if t is None or t.dtype == torch.int64:
            return t, t
        half = t.detach().to(dtype)
        return (half.requires_grad_(t.requires_grad),
                half.double().requires_grad_(t.requires_grad))

    mode, input, batch_sizes, h0, c0, weights = args
    pairs = [split(t) for t in (input, h0, c0)]
    wpairs = [split(w) for w in weights]
    masks = kwargs.get("dropout_masks")
    mpair = split(masks) if masks is not None else (None, None)
    out = []
    for k in range(2):
        a = (mode, pairs[0][k], batch_sizes, pairs[1][k], pairs[2][k], [w[k] for w in wpairs])
        kw = dict(kwargs, dropout_masks=None if masks is None else mpair[k].detach())
        out.append((a, kw))
    return out


def _leaves(args):
    _, input, _, h0, c0, weights = args
    named = {"input": input, "h0": h0, "c0": c0}
    named.update({f"w{i}": w for i, w in enumerate(weights)})
    return {k: v for k, v in named.items() if v is not None}


def _torch_nn(args, kwargs):
    """torch.nn's module on the stack's tensors: (output, h_n, c_n or None), leaves."""
    mode, input, batch_sizes, h0, c0, weights = args
    I = input.shape[-1]
    H = weights[1].shape[0] // {"lstm": 4, "gru": 3}.get(mode, 1)
    extra = {"nonlinearity": mode.removeprefix("rnn_")} if mode.startswith("rnn_") else {}
    if kwargs["proj_size"]:
        extra["proj_size"] = kwargs["proj_size"]
    module = getattr(torch.nn, CLASS_NAMES[mode])(
        I, H, num_layers=kwargs["num_layers"], bias=kwargs["has_bias"],
        bidirectional=kwargs["bidirectional"], dtype=input.dtype, **extra)
    # the module's parameters replaced by the leaves (its flat weights in the same order)
    for name, w in zip(module._flat_weights_names, weights):
        delattr(module, name)
        setattr(module, name, w)
    module._flat_weights = list(weights)
    x = input if batch_sizes is None else PackedSequence(input, batch_sizes)
    if h0 is None:
        hx = None
    else:
        hx = (h0, c0) if mode == "lstm" else h0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notes on its 16-bit paths
        output, hidden = module(x, hx)
    if batch_sizes is not None:
        output = output.data
    h_n, c_n = hidden if mode == "lstm" else (hidden, None)
    return (output, h_n, c_n)


def _run(impl, args, kwargs, options):
    mode = args[0]
    if impl == "torch.nn":
        outputs = _torch_nn(args, kwargs)
    else:
        module = fastrnn.functional if impl == "fastrnn" else fastrnn.reference
        outputs = module.rnn_stack(*args, **kwargs, **options)
    names = ("output", "h_n", "c_n") if mode == "lstm" else ("output", "h_n")
    outputs = dict(zip(names, outputs))
    gen = torch.Generator().manual_seed(5)
    upstream = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in
                outputs.items()}
    leaves = _leaves(args)
    grads = torch.autograd.grad([outputs[k] for k in upstream], list(leaves.values()),
                                [u.to(outputs[k].dtype) for k, u in upstream.items()])
    result = {k: v.detach() for k, v in outputs.items()}
    result.update({f"grad {k}": g for k, g in zip(leaves, grads)})
    return result


def assert_within_budget(fast, baseline, exact, dtype, what):
    assert fast.keys() == exact.keys() == baseline.keys()
    for name, value in fast.items():
        assert value.dtype == dtype, (name, value.dtype)
        err = relative_error(value, exact[name])
        base = relative_error(baseline[name], exact[name])
        assert err <= half_budget(base, dtype), (
            f"{what}, {name}: fastrnn's error {err:.3g} exceeds the budget "
            f"{half_budget(base, dtype):.3g} (baseline error {base:.3g})")


def _rows_apart(t, extra=3):
    """t's values in a leaf whose rows (last dimension) lie t.shape[-1] + extra elements apart,
    as in a slice of a wider buffer (the op's input then has ldx > I)."""
    strides, step = [], 1
    for i in reversed(range(t.dim())):
        strides.insert(0, step)
        step *= t.shape[i] + (extra if i == t.dim() - 1 else 0)
    wide = torch.empty_strided(t.shape, strides, dtype=t.dtype)
    return wide.copy_(t.detach()).requires_grad_(t.requires_grad)


def _check_stack(mode, dtype, options=None, baseline="torch.nn", cuda_path=None, sms=None,
                 rows_apart=False, **config):
    """cuda_path: run fastrnn's op through the CUDA drivers under host emulation, on that path
    (on `sms` emulated SMs); every GEMM a 16-bit one (half_gemms), the persistent path's
    products on tensor cores (mma_tiles). rows_apart: fastrnn's input in a wider buffer."""
    args, kwargs = stack_args(mode, **config)
    (half_args, half_kw), (exact_args, exact_kw) = _rounded(args, kwargs, dtype)
    if rows_apart:
        half_args = (half_args[0], _rows_apart(half_args[1]), *half_args[2:])
        assert half_args[1].stride(-2) == half_args[1].shape[-1] + 3
    options = options or {}
    if cuda_path is None:
        fast = _run("fastrnn", half_args, half_kw, options)
    else:
        with fastrnn.cuda_emulation(path=cuda_path, sms=sms) as stats:
            fast = _run("fastrnn", half_args, half_kw, options)
        assert stats.launches > 0 and stats.gemms > 0
        assert stats.half_gemms == stats.gemms, stats
        assert (stats.cooperative_launches > 0) == (cuda_path == "persistent")
        assert (stats.mma_tiles > 0) == (cuda_path == "persistent"), stats
    exact = _run("reference", exact_args, exact_kw, options)
    # the baseline on its own leaves (the same values)
    (base_args, base_kw), _ = _rounded(args, kwargs, dtype)
    base = _run(baseline, base_args, base_kw, options)
    assert_within_budget(fast, base, exact, dtype, f"{mode} {config} {options}")


STACKS = [
    dict(T=8, B=5, I=6, H=16, num_layers=1, bidirectional=False),
    dict(T=30, B=8, I=64, H=64, num_layers=1, bidirectional=False),
    dict(T=6, B=4, I=5, H=7, num_layers=2, bidirectional=True),
    dict(T=7, B=5, I=9, H=33, num_layers=2, bidirectional=True, packed=True),
    # bfloat16 with AVX512_BF16 on 2 threads or more: the steps shared by rows of the batch
    dict(T=9, B=17, I=8, H=40, num_layers=2, bidirectional=True, packed=True),
    dict(T=5, B=3, I=4, H=12, num_layers=1, bidirectional=False, bias=False, hx=False),
    dict(T=1, B=1, I=3, H=5, num_layers=1, bidirectional=False),
]


@pytest.mark.parametrize("config", STACKS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_stack_within_budget_of_torch_nn(mode, dtype, config):
    _check_stack(mode, dtype, **config)


# The CUDA drivers on the 16-bit types (cuda/through_float.h), under host emulation, on both
# paths: small shapes, emulation is slow.
EMULATED = [
    dict(T=5, B=3, I=6, H=16, num_layers=1, bidirectional=False),
    dict(T=4, B=3, I=5, H=8, num_layers=2, bidirectional=True, packed=True),
]


@pytest.mark.parametrize("path", ["persistent", "alternating"])
@pytest.mark.parametrize("config", EMULATED, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_emulated_cuda_within_budget_of_torch_nn(mode, dtype, config, path):
    _check_stack(mode, dtype, cuda_path=path, **config)


# The persistent path's tensor-core products (csrc/cuda/persistent.cuh tile_product) past one
# tile: 18 rows (two batch tiles, the second of 2 rows), P = 140 (two k chunks of the forward
# product; the backward's G*H = 560 five), units of 47 on 3 SMs (W rows padded to tiles); with
# a projection, P = 20 of H = 140. Not the ReLU RNN: in this draw one pre-activation lies within
# a bfloat16 rounding of 0 (|x| ~ 1e-4), so the rounded h_{t-1} of the tensor-core product flips
# its ReLU derivative against the float64 reference, an O(1) change of a gradient row that no
# rounding budget covers (torch.nn's own bfloat16 path flips on other draws: at B=14 its error is
# 0.16); the ReLU RNN's tensor-core products are checked by the tests above and below.
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode,proj", [("lstm", 0), ("lstm", 20), ("gru", 0), ("rnn_tanh", 0)])
def test_emulated_tensor_cores_over_several_tiles(mode, proj, dtype):
    _check_stack(mode, dtype, cuda_path="persistent", sms=3, T=3, B=18, I=5, H=140,
                 proj_size=proj, num_layers=1, bidirectional=False, packed=True)


# Every GEMM of the 16-bit stacks with 16-bit operands (exec.gemm's cublasGemmEx overload:
# the weights and the first layer's input as they are, the float32 rows rounded right before the
# product), on the alternating path, which runs all of them: every cell, two bidirectional
# layers (an inner layer's input rounded), packed, the input's rows apart in a wider buffer (the
# first layer's GEMMs read it in place).
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode,proj", [("lstm", 0), ("lstm", 4), ("gru", 0), ("rnn_tanh", 0),
                                       ("rnn_relu", 0)])
def test_emulated_cuda_16_bit_gemms_within_budget(mode, proj, dtype):
    _check_stack(mode, dtype, cuda_path="alternating", rows_apart=True, T=5, B=4, I=7, H=12,
                 proj_size=proj, num_layers=2, bidirectional=True, packed=True)


@pytest.mark.parametrize("path", ["persistent", "alternating"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_emulated_cuda_projection_and_options(dtype, path):
    _check_stack("lstm", dtype, cuda_path=path, T=4, B=3, I=5, H=8, num_layers=2,
                 bidirectional=True, proj_size=3, packed=True)
    _check_stack("lstm", dtype, {"grad_clip": 0.05, "cell_clip": 0.5}, baseline="reference",
                 cuda_path=path, T=4, B=3, I=5, H=8, num_layers=2, bidirectional=True,
                 masks=True)


@pytest.fixture
def allow_tf32():
    """Sets torch.backends.cuda.matmul.allow_tf32 for a test (restored after it)."""
    before = torch.backends.cuda.matmul.allow_tf32

    def set_(value):
        torch.backends.cuda.matmul.allow_tf32 = value

    yield set_
    torch.backends.cuda.matmul.allow_tf32 = before


def _emulated_float32(args, kwargs, tf32, allow_tf32):
    allow_tf32(tf32)
    with fastrnn.cuda_emulation(path="persistent", sms=3) as stats:
        result = _run("fastrnn", args, kwargs, {})
    assert stats.cooperative_launches > 0 and stats.half_gemms == 0
    assert (stats.mma_tiles > 0) == tf32, stats
    return result


TF32_CASES = [("lstm", 0), ("lstm", 3), ("gru", 0), ("rnn_tanh", 0), ("rnn_relu", 0)]


@pytest.mark.parametrize("mode,proj", TF32_CASES)
def test_emulated_float32_tf32_within_budget(mode, proj, allow_tf32):
    """float32 on the persistent path with torch.backends.cuda.matmul.allow_tf32: the products on
    tensor cores as TF32 (operands rounded to 10 mantissa bits, float32 accumulation). Budget:
    TF32 keeps float16's significand (11 bits, unit roundoff 2^-11) with float32's range, and
    rounds only the products' operands (state, gates and sums float32), so its error against
    float64 is at most half_budget of float16: twice what torch.nn errs in float16 on the same
    case, where every op rounds to 11 bits. Without TF32 the same call is the float32 FMA
    path (no tile products) within float32's tolerance, which the TF32 results exceed: the
    test tells the two apart."""
    config = dict(T=4, B=3, I=5, H=8, num_layers=2, bidirectional=True, proj_size=proj,
                  packed=True)
    args, kwargs = stack_args(mode, **config)
    (f32_args, f32_kw), (exact_args, exact_kw) = _rounded(args, kwargs, torch.float32)
    exact = _run("reference", exact_args, exact_kw, {})
    tf32 = _emulated_float32(f32_args, f32_kw, True, allow_tf32)
    (f32_args, f32_kw), _ = _rounded(args, kwargs, torch.float32)
    fma = _emulated_float32(f32_args, f32_kw, False, allow_tf32)
    # torch.nn in float16, against float64 on its own (float16-rounded) values
    (h_args, h_kw), (hx_args, hx_kw) = _rounded(args, kwargs, torch.float16)
    base = _run("torch.nn", h_args, h_kw, {})
    base_exact = _run("reference", hx_args, hx_kw, {})
    assert tf32.keys() == exact.keys() == base.keys()
    beyond_float32 = 0
    for name, value in tf32.items():
        assert value.dtype == fma[name].dtype == torch.float32
        err = relative_error(value, exact[name])
        budget = half_budget(relative_error(base[name], base_exact[name]), torch.float16)
        assert err <= budget, f"{mode} {name}: TF32 error {err:.3g} over the budget {budget:.3g}"
        kind = "output" if name in ("output", "h_n", "c_n") else "grad"
        assert relative_error(fma[name], exact[name]) <= TOLERANCES[torch.float32][kind], name
        beyond_float32 += err > TOLERANCES[torch.float32][kind]
    assert beyond_float32 > 0  # TF32 did round: some result is outside float32's tolerance


def test_emulated_float32_without_tf32_is_the_fma_path(allow_tf32):
    """allow_tf32 False (torch's default): the persistent path's float32 products are the FMA
    ones (no tile products), the same bits before and after a TF32 call, and other bits than
    TF32's."""
    args, kwargs = stack_args("lstm", T=4, B=3, I=5, H=8, num_layers=1, bidirectional=False,
                              dtype=torch.float32)
    first = _emulated_float32(*_rounded(args, kwargs, torch.float32)[0], False, allow_tf32)
    tf32 = _emulated_float32(*_rounded(args, kwargs, torch.float32)[0], True, allow_tf32)
    again = _emulated_float32(*_rounded(args, kwargs, torch.float32)[0], False, allow_tf32)
    for name in first:
        assert torch.equal(first[name], again[name]), name
    assert any(not torch.equal(first[name], tf32[name]) for name in first)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("B", [4, 13])  # 13: bfloat16 shares the steps by rows (2, 3 threads)
def test_projection_within_budget_of_torch_nn(dtype, packed, B):
    _check_stack("lstm", dtype, T=9, B=B, I=8, H=24, num_layers=2, bidirectional=True,
                 proj_size=10, packed=packed)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn_tanh"])
def test_options_and_masks_within_budget_of_the_reference(mode, dtype):
    """grad_clip (small enough to clamp), cell_clip and dropout masks, which torch.nn has not:
    fastrnn.reference in the same dtype is the baseline."""
    options = {"grad_clip": 0.05}
    if mode == "lstm":
        options["cell_clip"] = 0.5
    _check_stack(mode, dtype, options, baseline="reference", T=8, B=4, I=6, H=16,
                 num_layers=3, bidirectional=True, masks=True)


def _cell_case(name, dtype, B=6, I=10, H=20):
    torch.manual_seed(0)
    exact_module = getattr(torch.nn, name)(I, H, dtype=torch.float64)
    with torch.no_grad():
        for p in exact_module.parameters():
            p.copy_(p.to(dtype))  # the values every run shares
    x = torch.randn(B, I, dtype=torch.float64).to(dtype).double()
    hx = torch.randn(B, H, dtype=torch.float64).to(dtype).double() * 0.5
    states = (hx, hx.flip(0)) if name == "LSTMCell" else hx
    results = {}
    for impl, dt in (("exact", torch.float64), ("torch.nn", dtype), ("fastrnn", dtype)):
        cls = getattr(fastrnn if impl == "fastrnn" else torch.nn, name)
        module = cls(I, H).to(dt)
        module.load_state_dict(exact_module.state_dict())
        xi = x.to(dt).detach().requires_grad_()
        si = (tuple(s.to(dt) for s in states) if isinstance(states, tuple)
              else states.to(dt))
        with warnings.catch_warnings():
            warnings.simplefilter("error" if impl == "fastrnn" else "ignore")
            out = module(xi, si)
        outs = out if isinstance(out, tuple) else (out,)
        gen = torch.Generator().manual_seed(3)
        ups = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dt) for o in outs]
        torch.autograd.backward(outs, ups)
        r = {f"out{i}": o.detach() for i, o in enumerate(outs)}
        r["grad input"] = xi.grad
        r.update({f"grad {n}": p.grad for n, p in module.named_parameters()})
        results[impl] = r
    return results


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_within_budget_of_torch_nn(name, dtype):
    r = _cell_case(name, dtype)
    assert_within_budget(r["fastrnn"], r["torch.nn"], r["exact"], dtype, name)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_modules_run_fastrnn_in_half_without_fallback(dtype):
    """A module moved to a 16-bit dtype runs fastrnn's kernels (no fallback warning), returns
    that dtype and gives its parameters gradients of that dtype."""
    for cls in (fastrnn.LSTM, fastrnn.GRU, fastrnn.RNN):
        module = cls(6, 8, num_layers=2, bidirectional=True).to(dtype)
        x = torch.randn(4, 3, 6, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, _ = module(x)
        assert out.dtype == dtype
        out.float().sum().backward()
        assert all(p.grad.dtype == dtype for p in module.parameters())


def _torch_autocast_dtype(name, kwargs, dtype, x):
    module = getattr(torch.nn, name)(8, 16, **kwargs)
    try:
        with warnings.catch_warnings(), torch.autocast("cpu", dtype=dtype):
            warnings.simplefilter("ignore")
            out = module(x)
    except RuntimeError:
        return None  # torch.nn cannot run it (float16 LSTM through oneDNN, torch 2.13)
    out = out[0] if isinstance(out, tuple) else out
    return out.dtype


AUTOCAST_MODULES = [("LSTM", {}), ("LSTM", {"proj_size": 4}), ("GRU", {}), ("RNN", {}),
                    ("RNN", {"nonlinearity": "relu"}), ("LSTMCell", {}), ("GRUCell", {}),
                    ("RNNCell", {})]


@pytest.mark.parametrize("input_dtype", [torch.float32, "amp"], ids=["float32_input", "amp_input"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name,kwargs", AUTOCAST_MODULES,
                         ids=[f"{n}{''.join(map(str, k.values()))}" for n, k in AUTOCAST_MODULES])
def test_autocast_output_dtypes(name, kwargs, dtype, input_dtype):
    """Under torch.autocast("cpu") fastrnn runs its fused kernels in the autocast dtype (no
    fallback warning) and returns the dtype torch.nn returns there."""
    input_dtype = dtype if input_dtype == "amp" else input_dtype
    x = torch.randn(5, 3, 8) if "Cell" not in name else torch.randn(3, 8)
    x = x.to(input_dtype)
    module = getattr(fastrnn, name)(8, 16, **kwargs)
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=dtype):
        warnings.simplefilter("error")
        out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    expected = _torch_autocast_dtype(name, kwargs, dtype, x)
    if expected is None:  # torch.nn fails: the rule it applies to its other LSTMs
        expected = dtype
    assert out.dtype == expected
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32
               for p in module.parameters())


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_autocast_within_budget_of_torch_nn(name, dtype):
    """Autocast results (output and the float32 parameters' gradients) within the budget of
    torch.nn under the same autocast, both against float64 on the autocast-rounded weights."""
    torch.manual_seed(0)
    exact_module = getattr(torch.nn, name)(12, 24, num_layers=2, dtype=torch.float64)
    with torch.no_grad():
        for p in exact_module.parameters():
            p.copy_(p.to(dtype))
    x = torch.randn(9, 4, 12, dtype=torch.float64).to(dtype).double()
    results = {}
    for impl in ("exact", "torch.nn", "fastrnn"):
        cls = getattr(fastrnn if impl == "fastrnn" else torch.nn, name)
        dt = torch.float64 if impl == "exact" else torch.float32
        module = cls(12, 24, num_layers=2).to(dt)
        module.load_state_dict(exact_module.state_dict())
        with warnings.catch_warnings(), torch.autocast("cpu", dtype=dtype,
                                                       enabled=impl != "exact"):
            warnings.simplefilter("error" if impl == "fastrnn" else "ignore")
            try:
                out, _ = module(x.to(dt))
            except RuntimeError:
                if impl == "torch.nn":
                    pytest.skip("torch.nn cannot run this under autocast (oneDNN float16 LSTM)")
                raise
        out.double().pow(2).sum().backward()
        r = {"output": out.detach().double()}
        r.update({f"grad {n}": p.grad.double() for n, p in module.named_parameters()})
        results[impl] = r
    for name_, value in results["fastrnn"].items():
        err = relative_error(value, results["exact"][name_])
        base = relative_error(results["torch.nn"][name_], results["exact"][name_])
        assert err <= half_budget(base, dtype), (name_, err, base)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_opcheck_half(mode, dtype):
    proj = 2 if mode == "lstm" else 0
    args, kwargs = stack_args(mode, T=3, B=2, I=5, H=4, num_layers=2, bidirectional=True,
                              proj_size=proj, packed=True, masks=True, dtype=dtype)
    results = torch.library.opcheck(torch.ops.fastrnn.rnn.default,
                                    op_args(args, kwargs, training=True))
    assert all(result == "SUCCESS" for result in results.values()), results


def test_half_state_is_kept_in_float32():
    """A long GRU in bfloat16 whose state would drift if rounded to bfloat16 at every step: with
    an identity-like update (z near 1), h_t = h_{t-1} + tiny increments; fastrnn keeps them."""
    T, B, H = 600, 2, 8
    module = fastrnn.GRU(1, H, bias=True).double()
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.bias_hh_l0[H:2 * H] = 6.0  # z = sigmoid(6) ~ 0.9975: h moves 0.25% per step
        module.bias_ih_l0[2 * H:] = 1.0   # n = tanh(1) ~ 0.76, the value h approaches
    x = torch.zeros(T, B, 1, dtype=torch.float64)
    exact, _ = module(x)
    out, _ = module.to(torch.bfloat16)(x.to(torch.bfloat16))
    # rounded at every step, h would stall near 0.37, where a step falls below half a bfloat16
    # ulp; the exact h reaches 0.59
    assert exact[-1].min() > 0.55
    assert relative_error(out, exact) <= 2 ** -8


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_kernel_rounding_is_torchs(dtype):
    """cells/half.h's float -> 16-bit conversion gives the bits torch's .to(dtype) gives, on
    every 16-bit value, the floats next to it, the midpoints between two of them (ties to even)
    and next to those, subnormals, overflow and NaN."""
    bits = torch.arange(-2 ** 15, 2 ** 15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype).float()
    values = values[values.isfinite()]
    up = values.view(torch.int32) + 1
    down = values.view(torch.int32) - 1
    nxt = torch.nextafter(values.to(dtype), torch.tensor(float("inf"), dtype=dtype)).float()
    mid = ((values.double() + nxt.double()) / 2).float()  # exact in float: ties
    mids = torch.cat([mid, mid.view(torch.int32).add(1).view(torch.float32),
                      mid.view(torch.int32).sub(1).view(torch.float32)])
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 65504.0,
                             65519.99, 65520.0, 3.4e38, -3.4e38, 1e-40, -1e-45, 2.0 ** -25,
                             2.0 ** -25 * 1.0000001, 2.0 ** -24 * 1.5, 2.0 ** -14 * 0.9999])
    floats = torch.cat([values, up.view(torch.float32), down.view(torch.float32), mids, specials])
    floats = floats[~floats.isnan()]  # NaN: checked below (any quiet NaN is right)
    ours = fastrnn._C._to_16bit(floats, dtype == torch.bfloat16)
    theirs = floats.to(dtype).view(torch.int16)
    wrong = (ours != theirs).nonzero().flatten()
    assert wrong.numel() == 0, [(floats[i].item(), ours[i].item(), theirs[i].item())
                                for i in wrong[:5]]
    nan = fastrnn._C._to_16bit(torch.tensor([float("nan"), -float("nan")]),
                               dtype == torch.bfloat16)
    assert nan.view(dtype).isnan().all()


def test_bfloat16_without_the_dot_product_kernel():
    """The bfloat16 route of CPUs without AVX512_BF16 (products through float32), forced with
    FASTRNN_BF16_DOT=0 in a subprocess: the same budget, and it is the route that ran."""
    code = ("import fastrnn, sys; assert not fastrnn._C.cpu_bf16_dot(); import pytest; "
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', __file__, '-k', "
            "'bfloat16 and (stack or projection or options or cells)']))")
    env = dict(os.environ, FASTRNN_BF16_DOT="0")
    run = subprocess.run([sys.executable, "-c", code.replace("__file__", repr(__file__))],
                         env=env, capture_output=True, text=True, cwd=os.path.dirname(__file__))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout


def test_bfloat16_dot_product_kernel_runs_where_the_cpu_has_it():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    has = "avx512_bf16" in flags and fastrnn._C.cpu_isa() == "avx512"
    if os.environ.get("FASTRNN_BF16_DOT") == "0":
        has = False
    assert fastrnn._C.cpu_bf16_dot() == has
