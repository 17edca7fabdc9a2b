"""fastrnn.reference, the ground truth of the other tests: the same API as fastrnn.functional,
and torch.nn's results, without fastrnn's kernels involved."""

import inspect

import pytest

import fastrnn
from helpers import CELL_NAMES, DTYPES, make_problem, random_upstream, run
from tolerances import assert_close


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_same_signature_as_functional(name):
    def parameters(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    assert parameters(getattr(fastrnn.reference, name)) == \
        parameters(getattr(fastrnn.functional, name))


@pytest.mark.parametrize("h0", [True, False], ids=["h0", "no_h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_reference_matches_torch_nn(cell, dtype, bias, h0):
    problem = make_problem(cell, 17, 3, 7, 32, dtype, bias=bias, h0=h0)
    upstream = random_upstream(problem)
    outputs, grads = run("reference", problem, upstream)
    expected_outputs, expected_grads = run("torch.nn", problem, upstream)
    assert outputs.keys() == expected_outputs.keys() and grads.keys() == expected_grads.keys()
    for name, value in outputs.items():
        assert_close(value, expected_outputs[name], "output", name)
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], "grad", f"grad of {name}")


def test_reference_knows_the_kernels_modes():
    # the reference is written without the kernels; it must cover every mode they accept
    from fastrnn import _C
    assert tuple(fastrnn.reference.MODES) == tuple(_C.modes)
