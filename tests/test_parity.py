"""fastrnn.functional against torch.nn (same weights copied in) and fastrnn.reference: outputs and
the gradients of every input, under random upstream gradients."""

from dataclasses import replace

import pytest
import torch

import fastrnn
from helpers import (CELL_NAMES, CELLS, DTYPES, LAYOUTS, make_problem, random_upstream, run,
                     without_grad)
from tolerances import assert_close

# (T, B, I, H): every value of T in {1, 2, 17}, B in {1, 3, 8}, I and H in {1, 7, 32, 129}
SIZES = [(1, 1, 1, 1), (2, 3, 7, 7), (17, 8, 32, 129), (2, 1, 129, 32), (17, 3, 1, 7),
         (1, 8, 129, 1)]
BASELINES = ("torch.nn", "reference")


def test_sizes_cover_every_value():
    T, B, I, H = (set(values) for values in zip(*SIZES))
    assert T == {1, 2, 17} and B == {1, 3, 8}
    assert I == H == {1, 7, 32, 129}


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "contiguous"])
def test_layouts_are_views_into_larger_buffers(layout):
    """Each tensor is a non-contiguous view, or for a 1-D window an offset one."""
    problem = make_problem("lstm", 3, 2, 5, 4, layout=layout)
    for name, tensor in problem.tensors().items():
        assert not tensor.is_contiguous() or tensor.storage_offset() > 0, name


def assert_parity(problem, upstream, baselines=BASELINES):
    """fastrnn's outputs and gradients match each baseline's."""
    outputs, grads = run("fastrnn", problem, upstream)
    for baseline in baselines:
        expected_outputs, expected_grads = run(baseline, problem, upstream)
        assert outputs.keys() == expected_outputs.keys()
        assert grads.keys() == expected_grads.keys()
        for name, value in outputs.items():
            assert value.dtype == problem.input.dtype and value.is_contiguous()
            assert_close(value, expected_outputs[name], "output", f"{name} vs {baseline}")
        for name, grad in grads.items():
            assert grad.shape == getattr(problem, name).shape
            assert_close(grad, expected_grads[name], "grad", f"grad of {name} vs {baseline}")


@pytest.mark.parametrize("h0", [True, False], ids=["h0", "no_h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("T,B,I,H", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_parity_sizes(cell, dtype, T, B, I, H, bias, h0):
    problem = make_problem(cell, T, B, I, H, dtype, bias=bias, h0=h0)
    assert_parity(problem, random_upstream(problem))


@pytest.mark.parametrize("T,B,I,H", [(17, 3, 7, 32), (2, 1, 32, 1), (1, 8, 1, 7)])
@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "contiguous"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_parity_non_contiguous(cell, dtype, layout, T, B, I, H):
    problem = make_problem(cell, T, B, I, H, dtype, layout=layout)
    assert_parity(problem, random_upstream(problem))


@pytest.mark.parametrize("dim", [0, 1], ids=["time", "batch"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_parity_broadcast_input(cell, dtype, dim):
    """An input expanded from size 1 (stride 0) along time or batch."""
    problem = make_problem(cell, 5, 3, 7, 32, dtype)
    base = problem.input.detach().narrow(dim, 0, 1).clone().requires_grad_()
    problem = replace(problem, input=base.expand(problem.input.shape))
    assert problem.input.stride(dim) == 0
    assert_parity(problem, random_upstream(problem))


def _outputs_used(cell):
    used = [("output",), ("h_n",), ("output", "h_n")]
    if CELLS[cell].is_lstm:
        used += [("c_n",), ("h_n", "c_n"), ("output", "c_n")]
    return used


@pytest.mark.parametrize("cell,used", [(cell, used) for cell in CELL_NAMES
                                       for used in _outputs_used(cell)],
                         ids=lambda v: "+".join(v) if isinstance(v, tuple) else v)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parity_some_outputs_used(cell, used, dtype):
    """Outputs left out of the loss reach the backward as None gradients."""
    problem = make_problem(cell, 5, 3, 7, 32, dtype)
    assert_parity(problem, random_upstream(problem, used))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_parity_sum_loss(cell, dtype):
    """loss = sum of every output: the upstream gradients are expanded (stride 0) tensors."""
    problem = make_problem(cell, 5, 3, 7, 32, dtype)
    T, B, _, H = problem.sizes
    ones = problem.input.new_ones(())
    shapes = {"output": (T, B, H), "h_n": (B, H), "c_n": (B, H)}
    upstream = {name: ones.expand(shapes[name]) for name in problem.cell.outputs()}
    assert_parity(problem, upstream)


@pytest.mark.parametrize("h0,c0", [(True, False), (False, True)], ids=["h0_only", "c0_only"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_parity_lstm_one_initial_state(dtype, h0, c0):
    problem = make_problem("lstm", 5, 3, 7, 32, dtype, h0=h0, c0=c0)
    assert (problem.h0 is None) != (problem.c0 is None)
    assert_parity(problem, random_upstream(problem))


def _chained(impl, cell, inputs, h0, c0, weights):
    """One call per input, each starting from the final state of the one before; returns the
    last call's (output, h_n[, c_n])."""
    if impl == "torch.nn":
        module = weights
        state = (h0.unsqueeze(0), c0.unsqueeze(0)) if cell.is_lstm else h0.unsqueeze(0)
        for x in inputs:
            output, state = module(x, state)
        final = state if cell.is_lstm else (state,)
        return (output, *(s.squeeze(0) for s in final))
    module = {"fastrnn": fastrnn.functional, "reference": fastrnn.reference}[impl]
    for x in inputs:
        output, h0, *rest = cell.call(module, x, h0, c0, *weights)
        c0 = rest[0] if rest else None
    return (output, h0, *rest)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradient_flows_through_chained_calls(cell, dtype):
    """Two calls, the second starting from h_n (and c_n) of the first, the loss on the second's
    outputs only: the first call gets its gradients through the state alone."""
    first = make_problem(cell, 4, 3, 7, 32, dtype, seed=0)
    second = make_problem(cell, 6, 3, 7, 32, dtype, seed=1)
    cell = first.cell
    inputs = (first.input, second.input)
    weights = (first.weight_ih, first.weight_hh, first.bias_ih, first.bias_hh)
    states = [first.h0] + ([first.c0] if cell.is_lstm else [])
    upstream = list(random_upstream(second).values())

    module = cell.torch_nn(7, 32, bias=True, dtype=dtype)
    params = [module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0]
    with torch.no_grad():
        for param, weight in zip(params, weights):
            param.copy_(weight)

    results = {}
    for impl, impl_weights, weight_leaves in [("fastrnn", weights, list(weights)),
                                              ("reference", weights, list(weights)),
                                              ("torch.nn", module, params)]:
        outputs = _chained(impl, cell, inputs, first.h0, first.c0, impl_weights)
        grads = torch.autograd.grad(outputs, [*inputs, *states, *weight_leaves], upstream)
        results[impl] = ([o.detach() for o in outputs], grads)

    outputs, grads = results["fastrnn"]
    for baseline in ("reference", "torch.nn"):
        expected_outputs, expected_grads = results[baseline]
        for k, (value, expected) in enumerate(zip(outputs, expected_outputs)):
            assert_close(value, expected, "output", f"output {k} vs {baseline}")
        for k, (grad, expected) in enumerate(zip(grads, expected_grads)):
            assert_close(grad, expected, "grad", f"gradient {k} vs {baseline}")
    for grad in grads[:2 + len(states)]:  # both inputs and the first call's initial state
        assert grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_nan_propagates_like_torch_nn(cell, dtype):
    """A NaN in the input of batch row 0 makes every later output of that row NaN, as in
    torch.nn and the reference, and leaves the other rows finite."""
    problem = without_grad(make_problem(cell, 4, 3, 7, 32, dtype))
    problem.input[1, 0, 2] = float("nan")
    for impl in ("torch.nn", "reference", "fastrnn"):
        outputs, _ = run(impl, problem, {})
        for name, value in outputs.items():
            rows = value if name == "output" else value.unsqueeze(0)
            assert not rows[..., 1:, :].isnan().any(), f"{impl}: {name} of other rows"
            if name == "output":
                assert not rows[0, 0].isnan().any(), f"{impl}: output before the NaN"
                rows = rows[1:]
            assert rows[:, 0].isnan().all(), f"{impl}: {name} after the NaN is not NaN"
