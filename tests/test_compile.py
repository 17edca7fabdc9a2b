"""torch.compile(fullgraph=True) of code calling fastrnn.functional matches eager, forward and
backward. Compiling is slow: one case per cell, the default (inductor) backend for the LSTM."""

import pytest
import torch

import fastrnn
from helpers import CELLS, make_problem, random_upstream
from tolerances import assert_close


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def layer_loss(cell):
    """A function with work around the layer: the tanh of its input, a weighted sum after."""
    def fn(input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, upstream):
        outputs = cell.call(fastrnn.functional, torch.tanh(input), h0, c0, weight_ih, weight_hh,
                            bias_ih, bias_hh)
        return outputs, sum((o * g).sum() for o, g in zip(outputs, upstream))
    return fn


def outputs_and_grads(fn, problem, upstream):
    leaves = [t for t in problem.tensors().values() if t is not None]
    outputs, loss = fn(*problem.args(), list(upstream.values()))
    grads = torch.autograd.grad(loss, leaves)
    return [o.detach() for o in outputs], grads


@pytest.mark.parametrize("cell,backend", [("lstm", "inductor"), ("gru", "aot_eager"),
                                          ("rnn_tanh", "aot_eager"), ("rnn_relu", "aot_eager")])
def test_compile_matches_eager(cell, backend):
    problem = make_problem(cell, 5, 3, 7, 32, torch.float32)
    upstream = random_upstream(problem)
    fn = layer_loss(problem.cell)
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    expected_outputs, expected_grads = outputs_and_grads(fn, problem, upstream)
    outputs, grads = outputs_and_grads(compiled, problem, upstream)
    for k, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, "output", f"output {k}")
    for k, (grad, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(grad, expected, "grad", f"gradient {k}")


def test_compile_dynamic_sequence_length():
    """One dynamic-shape graph serves several T, B; no_grad runs the inference path."""
    fn = layer_loss(CELLS["lstm"])
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=True)
    for T, B in [(4, 3), (9, 5)]:
        problem = make_problem("lstm", T, B, 7, 32, torch.float32, seed=T)
        upstream = random_upstream(problem)
        expected_outputs, expected_grads = outputs_and_grads(fn, problem, upstream)
        outputs, grads = outputs_and_grads(compiled, problem, upstream)
        for value, expected in zip(outputs, expected_outputs):
            assert_close(value, expected, "output", f"T = {T}")
        for grad, expected in zip(grads, expected_grads):
            assert_close(grad, expected, "grad", f"T = {T}")
        with torch.no_grad():
            inferred, _ = compiled(*problem.args(), list(upstream.values()))
        for value, expected in zip(inferred, expected_outputs):
            assert_close(value, expected, "output", f"no_grad, T = {T}")
