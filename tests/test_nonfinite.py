"""Non-finite values propagate as in torch.nn: with +-inf or NaN in the input, an initial state or
a weight, the outputs and final states have NaN and inf exactly where torch.nn's have them, and
the gradients are non-finite exactly where torch.nn's are, in float32 (the fast activations of
csrc/cells/fast_math.h: sigmoid(-inf) must be 0, not a tiny positive number, so that the GRU's
r * (W_hn h) is NaN) and in float64."""

import pytest
import torch

import fastrnn

T, B, I, H = 3, 2, 3, 4
INF = float("inf")


def run(module, x, hx):
    x = x.clone().requires_grad_()
    states = [h.clone().requires_grad_() for h in (hx if isinstance(hx, tuple) else (hx,))]
    output, h_n = module(x, tuple(states) if isinstance(hx, tuple) else states[0])
    outputs = [output, *(h_n if isinstance(h_n, tuple) else (h_n,))]
    leaves = [x, *states, *module.parameters()]
    grads = torch.autograd.grad(sum(o.sum() for o in outputs), leaves)
    return outputs, grads


@pytest.mark.parametrize("value", [INF, -INF, float("nan")], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,where", [(cls, where) for cls in ("LSTM", "GRU", "RNN")
                                       for where in ("input", "h0", "c0", "weight_hh")
                                       if where != "c0" or cls == "LSTM"])
def test_non_finite_positions_match_torch_nn(cls, dtype, where, value):
    torch.manual_seed(0)
    fast = getattr(fastrnn, cls)(I, H, dtype=dtype)
    ref = getattr(torch.nn, cls)(I, H, dtype=dtype)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(T, B, I, dtype=dtype)
    h0, c0 = torch.randn(1, B, H, dtype=dtype), torch.randn(1, B, H, dtype=dtype)
    if where == "weight_hh":
        with torch.no_grad():
            fast.weight_hh_l0[2, 1] = value
            ref.weight_hh_l0[2, 1] = value
    else:
        {"input": x, "h0": h0, "c0": c0}[where][0, 0, 1] = value
    hx = (h0, c0) if cls == "LSTM" else h0
    (fast_out, fast_grads), (ref_out, ref_grads) = run(fast, x, hx), run(ref, x, hx)
    for k, (a, b) in enumerate(zip(fast_out, ref_out)):
        assert torch.equal(a.isnan(), b.isnan()), f"output {k}: NaN at other places"
        assert torch.equal(a.isinf(), b.isinf()), f"output {k}: inf at other places"
        assert torch.equal(a.isnan().any(), b.isnan().any())
    for k, (a, b) in enumerate(zip(fast_grads, ref_grads)):
        assert torch.equal(a.isfinite(), b.isfinite()), f"gradient {k}: non-finite elsewhere"


def test_gru_inf_in_h0_gives_nan_as_torch_nn():
    """The issue's case, float32: h0 with inf; torch.nn's output has NaN, and so must ours."""
    torch.manual_seed(0)
    fast, ref = fastrnn.GRU(I, H), torch.nn.GRU(I, H)
    ref.load_state_dict(fast.state_dict())
    h0 = torch.zeros(1, 1, H)
    h0[0, 0, 1] = INF
    x = torch.randn(2, 1, I)
    want = ref(x, h0)[0]
    assert want.isnan().any()
    assert torch.equal(fast(x, h0)[0].isnan(), want.isnan())
    assert torch.equal(fastrnn.reference.gru(x, h0[0], *ref._flat_weights)[0].isnan(),
                       want.isnan())
