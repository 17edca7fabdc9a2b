"""The kernels' thread teams: each thread owns blocks of 64 hidden units (and, with a projection,
a share of h's columns) and the threads wait for each other once or twice per step. Sizes here
give every thread units and columns of its own, with uneven shares (H = 129: blocks of 64, 64
and 1), packed sequences of different lengths in both directions, and projections split across
threads; thread counts from 1 to more than the machine's cores (the barrier must yield)."""

import os
import subprocess
import sys

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import stack_args
from test_rnn_stack import assert_matches_reference
from tolerances import assert_close


@pytest.fixture
def num_threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def _cases():
    for mode in CELL_NAMES:
        yield mode, dict(H=129)
        yield mode, dict(H=200, packed=True)
    yield "lstm", dict(H=129, proj_size=70, packed=True)
    yield "lstm", dict(H=150, proj_size=20)
    # float32: each of 2 or 3 threads gets 4 rows or more, the steps shared by rows
    for mode in CELL_NAMES:
        yield mode, dict(B=13, H=70, packed=True)
    yield "lstm", dict(B=13, H=70, proj_size=30, packed=True)
    yield "lstm", dict(B=12, H=40, proj_size=20, masks=True, hx=False, bias=False)


@pytest.mark.parametrize("num_threads", [1, 2, 3], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_cases()),
                         ids=config_ids)
def test_teams_match_reference(mode, config, dtype, num_threads):
    args, kwargs = stack_args(mode, **{**dict(T=7, B=5, I=9, num_layers=2, bidirectional=True,
                                              dtype=dtype), **config})
    assert_matches_reference(args, kwargs, f"{num_threads} threads: ")


def _product_cases():
    # T = 9: more rows in all than kDirectMaxRows, so the weights are packed. B: one row (the
    # kernel's most accumulator sets), 13 rows (row blocks of 4, 4 and 5, and
    # K cut into slices, which only happens with more than 6 rows). H = 301: K not a multiple of
    # 2, 3 or 4 (leftover k after the accumulator sets), more than a slice of the AVX2 build (256
    # rows of a strip; of the AVX-512 build 1024, which the LSTM's backward product, K = 4H =
    # 1204, exceeds), and a last unit block of 45 columns (a partial strip of 16, a partial
    # vector of 8). With a projection (P = 37) the backward product's columns are a partial strip
    # of their own.
    for mode in ("lstm", "gru", "rnn_tanh"):
        for B in (1, 13):
            yield mode, dict(B=B, H=301)
    yield "lstm", dict(B=13, H=301, proj_size=37)
    yield "gru", dict(B=8, H=40, packed=True)


@pytest.mark.parametrize("num_threads", [1, 2], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_product_cases()),
                         ids=config_ids)
def test_recurrent_product_blocking(mode, config, dtype, num_threads):
    """The packed recurrent kernel's edges (row blocks, K slices, partial strips and vectors,
    leftover k), against the float64 reference, forward and backward. In float64 unit blocks
    are 32 columns and strips 32 or 8 (AVX-512, AVX2): the last unit block's 13 columns are a
    partial strip (a vector of 8 and a partial one of 5; or a strip of 8 and one of 5)."""
    args, kwargs = stack_args(mode, T=9, I=10, num_layers=1, bidirectional=True,
                              dtype=dtype, **config)
    assert_matches_reference(args, kwargs, f"{num_threads} threads: ")


def _direct_product_cases():
    # At most kDirectMaxRows rows in all (T x B, or a packed sequence's sum of lengths), where the
    # step products read the weights unpacked: one row and pairs of rows; H = 301, so K is not a
    # multiple of the vector width (a masked last piece of each dot product), and the last unit
    # block's 45 columns end in a partial group of dot products and a partial vector of row
    # updates; with a projection (P = 37) in both products.
    for mode in ("lstm", "gru", "rnn_tanh"):
        yield mode, dict(T=1, B=1, H=301)
        yield mode, dict(T=2, B=3, H=301)
    yield "lstm", dict(T=1, B=8, H=301, proj_size=37)
    yield "gru", dict(T=3, B=3, H=70, packed=True)  # 6 rows


@pytest.mark.parametrize("num_threads", [1, 2], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_direct_product_cases()), ids=config_ids)
def test_direct_product_edges(mode, config, dtype, num_threads):
    """The unpacked step products of short calls, against the float64 reference, forward and
    backward."""
    args, kwargs = stack_args(mode, I=10, num_layers=2, bidirectional=True,
                              dtype=dtype, **config)
    assert_matches_reference(args, kwargs, f"{num_threads} threads: ")


def _input_in_steps_cases():
    # Batch >= 16 and W_ih, W_hh within 2 MiB in all, or batch >= 64: each thread computes its
    # units' columns of W_ih x in the step (input_in_steps in csrc/cpu/rnn_cpu.cpp), in inference
    # into a buffer of B rows. Packed sequences (fewer rows in later steps, both directions), a
    # projection, and the second layer's input (D*P columns of the first layer's output).
    for mode in CELL_NAMES:
        yield mode, dict(B=17, H=40)
        yield mode, dict(B=16, H=70, packed=True)
    yield "lstm", dict(B=16, H=64, proj_size=24, packed=True)
    yield "gru", dict(B=64, H=300)  # the second layer's W_ih and W_hh: 3.2 MiB


@pytest.mark.parametrize("num_threads", [1, 2], indirect=True)
@pytest.mark.parametrize("mode,config", list(_input_in_steps_cases()), ids=config_ids)
def test_input_product_in_the_steps(mode, config, num_threads):
    """float32 against the float64 reference, forward and backward, where the steps compute
    W_ih x themselves."""
    args, kwargs = stack_args(mode, T=5, I=9, num_layers=2, bidirectional=True,
                              dtype=torch.float32, **config)
    assert_matches_reference(args, kwargs, f"{num_threads} threads: ")


def assert_forward_bitwise_for_thread_counts(args, kwargs):
    """rnn_stack's outputs on 2 and 3 threads are bitwise those on 1."""
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(fastrnn.functional.rnn_stack(*args, **kwargs))
    finally:
        torch.set_num_threads(before)
    for n, result in zip((2, 3), results[1:]):
        for value, expected in zip(result, results[0]):
            assert torch.equal(value, expected), f"{n} threads differ from 1"


@pytest.mark.parametrize("T,B", [(9, 3), (9, 17), (2, 3)], ids=["T9B3", "T9B17", "T2B3"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_thread_count_does_not_change_the_recurrence(mode, dtype, T, B):
    """The recurrent product, the projection and the cell compute each column the same way
    whoever owns it, so forward outputs are bitwise equal for every thread count, in float32
    and float64. (B = 17: a projection by single-threaded BLAS calls on each thread's columns
    was not; OpenBLAS's rounding depends on the call's width there. The steps also compute
    W_ih x themselves at B = 17 and these sizes. T = 2, B = 3: six rows, too few to pack the
    weights for.)"""
    args, kwargs = stack_args(mode, T=T, B=B, I=6, H=200, num_layers=1, bidirectional=True,
                              dtype=dtype, requires_grad=False,
                              proj_size=70 if mode == "lstm" else 0)
    assert_forward_bitwise_for_thread_counts(args, kwargs)


# (dtype, B, H): bfloat16 (AVX512_BF16) shares by rows from 3 rows a thread, float32 from 4
ROW_SPLITS = [(torch.bfloat16, 6, 256), (torch.float32, 9, 300)]


@pytest.mark.parametrize("requires_grad", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("mode,proj_size", [(m, 0) for m in CELL_NAMES] + [("lstm", 64)])
@pytest.mark.parametrize("dtype,B,H", ROW_SPLITS, ids=lambda v: str(v).removeprefix("torch."))
def test_row_split_matches_one_thread(dtype, B, H, mode, proj_size, requires_grad):
    """Forward with the packed float32 or bfloat16 kernels shares the steps by rows of the batch
    where each of 2 or 3 threads gets enough rows and the weights are small (split_by_rows in
    csrc/cpu/rnn_cpu.cpp); one thread runs them as one team owning every unit. Packed sequences
    leave a thread one or two active rows of a larger step, which must still be summed as the
    step's rows are (the step products' step_rows): outputs and final states bitwise equal.
    (2 threads: rows [0, B/2) and [B/2, B); the second thread's rows end first, leaving it one
    or two rows of a step of 4 or more for many steps. Long sums (H >= 256; on AVX2 H = 300 cuts
    K in blocks) and long sequences, so that another order of sums shows in the outputs, even
    bfloat16's. 3 threads: too few rows each, a team by units, as one thread.)"""
    args, kwargs = stack_args(mode, T=60, B=B, I=32, H=H, num_layers=2, bidirectional=True,
                              packed=True, dtype=dtype, requires_grad=requires_grad,
                              proj_size=proj_size)
    assert_forward_bitwise_for_thread_counts(args, kwargs)


def _forward_and_backward(args, kwargs, threads):
    """Outputs and every gradient of rnn_stack with `threads` threads."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        outputs = [o for o in fastrnn.functional.rnn_stack(*args, **kwargs) if o.numel()]
        leaves = [t for t in (args[1], args[3], args[4], *args[5]) if t is not None]
        grads = torch.autograd.grad(sum((o * o).sum() for o in outputs), leaves)
    finally:
        torch.set_num_threads(before)
    return [o.detach() for o in outputs], list(grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_determinism_per_dtype(mode, dtype):
    """The README's determinism guarantee, per dtype: at one thread count, repeated calls give
    bitwise equal outputs and gradients; across thread counts outputs are bitwise equal (as in
    test_thread_count_does_not_change_the_recurrence) and the gradients agree to the tolerances
    of tolerances.py, not bitwise (the weight gradients are whole-sequence GEMMs cut by thread)."""
    args, kwargs = stack_args(mode, T=9, B=17, I=6, H=200, num_layers=1, bidirectional=True,
                              dtype=dtype, proj_size=70 if mode == "lstm" else 0)
    for threads in (1, 3):
        first, again = (_forward_and_backward(args, kwargs, threads) for _ in range(2))
        for a, b in zip(first[0] + first[1], again[0] + again[1]):
            assert torch.equal(a, b), f"{threads} threads: two calls differ"
    one, three = (_forward_and_backward(args, kwargs, n) for n in (1, 3))
    for a, b in zip(three[0], one[0]):
        assert torch.equal(a, b), "3 threads against 1: outputs differ"
    for a, b in zip(three[1], one[1]):
        assert_close(a, b, "grad", "3 threads against 1")


@pytest.mark.parametrize("isa", ["avx2", "baseline"])
def test_teams_on_other_instruction_sets(isa):
    """The cases above again on the other builds (the teams in float32, the products' edges in
    both dtypes): AVX2 has its own packed kernel (strips of 16 floats or 8 doubles), the
    baseline build multiplies with BLAS calls on each thread. AVX2 also shares float32 steps by
    rows (its K blocks of 256 and up to 4 sets of accumulators then follow the step's rows); the
    baseline build never does, and its BLAS calls' rounding depends on their widths, so its
    outputs are not bitwise the same for every thread count."""
    env = {**os.environ, "FASTRNN_CPU_ISA": isa}
    cases = ("test_teams_match_reference and float32 or test_recurrent_product_blocking or "
             "test_direct_product_edges")
    if isa == "avx2":
        cases += " or test_row_split_matches_one_thread and float32"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                          "-k", cases], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
