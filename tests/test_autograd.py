"""Autograd plumbing: repeated backward through one graph, inputs left untouched, no silent
double backward."""

import os
from dataclasses import replace

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, NAMES, make_problem, random_upstream, run, without_grad
from tolerances import assert_close


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_retain_graph_backward_twice(cell, dtype):
    """backward must not overwrite what forward saved: a second backward gives the same grads."""
    problem = make_problem(cell, 6, 3, 7, 32, dtype)
    upstream = random_upstream(problem)
    outputs = problem.cell.call(fastrnn.functional, *problem.args())
    leaves = [t for t in problem.tensors().values() if t is not None]
    first = torch.autograd.grad(outputs, leaves, list(upstream.values()), retain_graph=True)
    second = torch.autograd.grad(outputs, leaves, list(upstream.values()), retain_graph=True)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # and both are right
    _, expected = run("reference", problem, upstream)
    for grad, (name, expected_grad) in zip(first, expected.items()):
        assert_close(grad, expected_grad, "grad", name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_backward_accumulates_into_grad(cell, dtype):
    """.backward() twice accumulates twice the gradient into .grad, as for any op."""
    problem = make_problem(cell, 4, 3, 7, 7, dtype)
    upstream = random_upstream(problem)
    outputs = problem.cell.call(fastrnn.functional, *problem.args())
    loss = sum((o * g).sum() for o, g in zip(outputs, upstream.values()))
    loss.backward(retain_graph=True)
    once = {name: t.grad.clone() for name, t in problem.tensors().items() if t is not None}
    loss.backward()
    for name, grad in once.items():
        assert_close(getattr(problem, name).grad, 2 * grad, "grad", name)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_double_backward_raises(cell):
    """Gradients taken with create_graph=True are right, but differentiating them again raises
    (autograd's fallback would return zeros with a warning)."""
    problem = make_problem(cell, 4, 3, 5, 6, torch.float64)
    upstream = random_upstream(problem)
    outputs = problem.cell.call(fastrnn.functional, *problem.args())
    loss = sum((o * g).sum() for o, g in zip(outputs, upstream.values()))
    grad_input, = torch.autograd.grad(loss, problem.input, create_graph=True)
    _, expected = run("reference", problem, upstream)
    assert_close(grad_input, expected["input"], "grad", "input")
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        grad_input.sum().backward()


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_inputs_unchanged(cell, layout):
    """Forward and backward read their inputs only (also the NaN around the strided views)."""
    problem = make_problem(cell, 5, 3, 7, 32, layout=layout)
    tensors = {n: t for n, t in problem.tensors().items() if t is not None}
    before = {n: t.detach().clone() for n, t in tensors.items()}
    storage_before = {n: torch.tensor([], dtype=t.dtype).set_(t.untyped_storage()).clone()
                      for n, t in tensors.items()}
    run("fastrnn", problem, random_upstream(problem))
    for name, tensor in tensors.items():
        assert torch.equal(tensor.detach(), before[name]), name
        storage = torch.tensor([], dtype=tensor.dtype).set_(tensor.untyped_storage())
        assert torch.equal(storage.nan_to_num(7.0), storage_before[name].nan_to_num(7.0)), name


@pytest.mark.parametrize("cell,name", [(cell, name) for cell in CELL_NAMES for name in NAMES
                                       if name != "c0" or cell == "lstm"])
def test_gradient_of_one_input_alone(cell, name):
    """Only one tensor requires grad: its gradient is still right."""
    problem = make_problem(cell, 4, 3, 7, 7)
    problem = replace(without_grad(problem), **{name: getattr(problem, name)})
    upstream = random_upstream(problem)
    grads = {}
    for impl in (fastrnn.functional, fastrnn.reference):
        outputs = problem.cell.call(impl, *problem.args())
        assert all(o.requires_grad for o in outputs)
        grads[impl] = torch.autograd.grad(outputs, getattr(problem, name),
                                          list(upstream.values()))[0]
    assert_close(grads[fastrnn.functional], grads[fastrnn.reference], "grad", name)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_deterministic(cell):
    """Two identical calls give bitwise identical outputs and gradients."""
    problem = make_problem(cell, 17, 8, 32, 129, torch.float32)
    upstream = random_upstream(problem)
    first, second = run("fastrnn", problem, upstream), run("fastrnn", problem, upstream)
    for a, b in zip(first, second):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[name], b[name]) for name in a)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_flat_over_repeated_calls():
    """The README's "memory flat": training forward and backward, packed and padded, many times
    over; the process's resident memory does not grow after a warm-up (each call's reserve and
    scratch are freed with it)."""
    torch.manual_seed(0)
    module = fastrnn.LSTM(16, 32, num_layers=2, bidirectional=True, proj_size=8)
    padded = torch.randn(12, 5, 16)
    packed = torch.nn.utils.rnn.pack_padded_sequence(padded, [12, 9, 5, 5, 1])

    def step():
        for x in (padded, packed):
            output, (h, c) = module(x)
            data = output.data if isinstance(output, torch.nn.utils.rnn.PackedSequence) \
                else output
            (data.sum() + h.sum() + c.sum()).backward()

    for _ in range(20):
        step()
    before = _rss_bytes()
    for _ in range(150):
        step()
    grown = _rss_bytes() - before
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB over 150 calls"


def test_concurrent_calls_from_python_threads():
    """The README's thread safety: one module called from several Python threads at once gives
    each the result of a call alone (no state is shared between calls)."""
    import threading
    torch.manual_seed(0)
    module = fastrnn.GRU(8, 16, num_layers=2)
    inputs = [torch.randn(10, 3, 8) for _ in range(4)]
    expected = [module(x)[0] for x in inputs]
    results = [None] * len(inputs)

    def work(k):
        for _ in range(20):
            results[k] = module(inputs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_double_backward_raises(name):
    """The cells (the cell op's autograd) as the stack op: gradients with create_graph=True are
    torch.nn's, and differentiating them again raises."""
    torch.manual_seed(0)
    ours = getattr(fastrnn, name)(3, 4).double()
    theirs = getattr(torch.nn, name)(3, 4).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    grads = []
    for cell in (ours, theirs):
        out = cell(x)
        h = out[0] if isinstance(out, tuple) else out
        grads.append(torch.autograd.grad(h.sum(), x, create_graph=True)[0])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-14, rtol=1e-14)
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        grads[0].sum().backward()
