"""torch.compile(fullgraph=True) of code calling fastrnn.functional, and of a model holding a
fastrnn.LSTM (padded and packed input, with and without initial states), matches eager, forward
and backward; packing inside the compiled function breaks the graph only where torch.nn's own
pack_padded_sequence does. Compiling is slow: one case per cell, the default (inductor) backend
for the functional LSTM."""

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


def test_compile_dynamic_raises_the_kernels_error_while_tracing():
    """The fake kernel runs the kernels' checks on the example sizes: a wrong input width is
    refused while tracing, with the kernels' message, as in eager mode."""
    lstm = torch.nn.LSTM(7, 8)
    weights = [w.detach() for w in lstm._flat_weights]

    def fn(x):
        return fastrnn.functional.rnn_stack("lstm", x, None, None, None, weights, has_bias=True,
                                            num_layers=1, bidirectional=False)[0]

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=True)
    assert compiled(torch.randn(3, 2, 7)).shape == (3, 2, 8)
    with pytest.raises(Exception, match="input has I = 5 features but weight_ih_l0 expects 7"):
        compiled(torch.randn(3, 2, 5))


class Tagger(torch.nn.Module):
    """A model around fastrnn.LSTM (two layers, bidirectional, projection, batch first) taking a
    padded batch and its initial state, or a PackedSequence."""

    def __init__(self):
        super().__init__()
        self.lstm = fastrnn.LSTM(7, 16, num_layers=2, bidirectional=True, batch_first=True,
                                 proj_size=5)
        self.head = torch.nn.Linear(10, 3)

    def forward(self, x, hx=None):
        output, (h_n, c_n) = self.lstm(x, hx)
        if isinstance(output, torch.nn.utils.rnn.PackedSequence):
            output = output.data
        return self.head(torch.relu(output)), h_n, c_n


@pytest.mark.parametrize("packed,with_hx", [(False, True), (True, False), (True, True)],
                         ids=["padded", "packed", "packed_with_hx"])
def test_compile_module_matches_eager(packed, with_hx):
    # Dynamo refuses to trace instances of torch.nn.RNN/GRU/LSTM, and fastrnn's modules are
    # such instances (they subclass them) unless allow_rnn is set; see fastrnn/modules.py.
    # Packed with (h0, c0): torch.nn's hidden-size check would read batch_sizes[0], a value the
    # graph cannot guard on; fastrnn's forward checks the rest and leaves B to the op.
    with torch._dynamo.config.patch(allow_rnn=True):
        _check_compile_module(packed, with_hx, fullgraph=True)


def test_compile_module_graph_breaks_without_allow_rnn():
    """Without allow_rnn, compiling breaks the graph around the module, as for torch.nn.LSTM,
    and still gives eager's results."""
    _check_compile_module(packed=False, with_hx=True, fullgraph=False)


def _pack(x, enforce_sorted=False):
    """x packed with lengths 1 and T among them (unsorted unless enforce_sorted)."""
    lengths = torch.tensor([6, 4, 3, 1] if enforce_sorted else [3, 6, 1, 4])
    return torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=enforce_sorted)


def _check_compile_module(packed, with_hx, fullgraph, pack_inside=False, enforce_sorted=False):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Tagger()
    x = torch.randn(4, 6, 7, requires_grad=True)
    h0 = (torch.randn(4, 4, 5, requires_grad=True), torch.randn(4, 4, 16, requires_grad=True))
    leaves = [x, *(h0 if with_hx else ()), *model.parameters()]
    hx = h0 if with_hx else None

    def packing_model(x, hx):
        return model(_pack(x, enforce_sorted), hx)
    run = packing_model if pack_inside else model
    compiled = torch.compile(run, fullgraph=fullgraph, backend="aot_eager")
    results = []
    for fn in (run, compiled):
        if packed and not pack_inside:
            outputs = fn(_pack(x), hx)
        else:
            outputs = fn(x, hx)
        loss = sum((o * torch.cos(torch.arange(o.numel(), dtype=o.dtype)).view_as(o)).sum()
                   for o in outputs)
        results.append(([o.detach() for o in outputs], torch.autograd.grad(loss, leaves)))
    (expected_outputs, expected_grads), (outputs, grads) = results
    for k, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert_close(value, expected, "output", f"output {k}")
    for k, (grad, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(grad, expected, "grad", f"gradient {k}")


@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
def test_packing_inside_the_compiled_function(enforce_sorted):
    """Dynamo does not trace pack_padded_sequence (torch marks it skipped), so a function that
    packs cannot compile with fullgraph=True; the graph breaks there and nowhere in fastrnn.
    Sorted packing without hx needs B = batch_sizes[0], a value read from a tensor: a graph
    break of its own unless capture_scalar_outputs is on, as here."""
    model = Tagger()
    x = torch.randn(4, 6, 7)
    with torch._dynamo.config.patch(allow_rnn=True, capture_scalar_outputs=enforce_sorted):
        explanation = torch._dynamo.explain(
            lambda x: model(_pack(x, enforce_sorted)))(x)
        reasons = [str(r.reason) for r in explanation.break_reasons]
        assert all("pack_padded_sequence" in r for r in reasons), reasons
        _check_compile_module(packed=True, with_hx=False, fullgraph=False, pack_inside=True,
                              enforce_sorted=enforce_sorted)
