"""Shared by the tests: the cells, random problems in several memory layouts, and one function that
runs forward and backward through fastrnn, fastrnn.reference or torch.nn."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

import fastrnn

NAMES = ("input", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
OUTPUTS = ("output", "h_n", "c_n")
DTYPES = (torch.float32, torch.float64)
# Every layout but "contiguous" gives every tensor of the problem a non-contiguous view of a
# larger NaN-filled buffer, so a kernel that reads outside the view produces NaN.
LAYOUTS = ("contiguous", "sliced", "every_other", "transposed", "feature_strided")


@dataclass(frozen=True)
class Cell:
    mode: str  # the op's mode
    gates: int  # G: rows of the weights in units of H
    nn_class: type
    nonlinearity: str | None = None  # RNN only

    @property
    def is_lstm(self) -> bool:
        return self.mode == "lstm"

    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS if self.is_lstm else OUTPUTS[:2]

    def call(self, impl, input, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        """impl.lstm / gru / rnn (impl: fastrnn.functional or fastrnn.reference) on the tensors."""
        if self.is_lstm:
            return impl.lstm(input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
        assert c0 is None
        if self.mode == "gru":
            return impl.gru(input, h0, weight_ih, weight_hh, bias_ih, bias_hh)
        return impl.rnn(input, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                        nonlinearity=self.nonlinearity)

    def torch_nn(self, input_size, hidden_size, bias, dtype) -> torch.nn.Module:
        kwargs = {"nonlinearity": self.nonlinearity} if self.nonlinearity else {}
        return self.nn_class(input_size, hidden_size, bias=bias, dtype=dtype, **kwargs)


CELLS = {
    "lstm": Cell("lstm", 4, torch.nn.LSTM),
    "gru": Cell("gru", 3, torch.nn.GRU),
    "rnn_tanh": Cell("rnn_tanh", 1, torch.nn.RNN, "tanh"),
    "rnn_relu": Cell("rnn_relu", 1, torch.nn.RNN, "relu"),
}
CELL_NAMES = tuple(CELLS)


def _strided_view(values: Tensor, layout: str, is_input: bool = False) -> Tensor:
    """A non-contiguous view holding `values`, cut from a larger buffer filled with NaN."""
    if layout == "contiguous":
        return values.clone()
    shape = values.shape
    if layout == "sliced":  # a window along the last dimension: x = big[:, :, 3:3+I]
        buf = values.new_full((*shape[:-1], shape[-1] + 5), float("nan"))
        view = buf[..., 3:3 + shape[-1]]
    elif layout == "every_other" or (layout == "transposed" and values.dim() == 1):
        buf = values.new_full((2 * shape[0], *shape[1:]), float("nan"))  # x = big[::2]
        view = buf[::2]
    elif layout == "transposed":
        if is_input:  # a batch-first buffer [B, T, I] seen as [T, B, I]
            view = values.new_full((shape[1], shape[0], shape[2]), float("nan")).transpose(0, 1)
        else:  # a column-major matrix
            view = values.new_full(shape[::-1], float("nan")).T
    elif layout == "feature_strided":  # every other element along the last dimension
        buf = values.new_full((*shape[:-1], 2 * shape[-1]), float("nan"))
        view = buf[..., ::2]
    else:
        raise ValueError(layout)
    view.copy_(values)
    assert view.shape == shape
    return view


@dataclass(frozen=True)
class Problem:
    """The tensors of one call, each a leaf that requires grad, or None when absent."""
    cell: Cell
    input: Tensor
    h0: Tensor | None
    c0: Tensor | None
    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None

    def tensors(self) -> dict[str, Tensor | None]:
        return {name: getattr(self, name) for name in NAMES}

    def args(self) -> tuple:
        return tuple(getattr(self, name) for name in NAMES)

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        T, B, I = self.input.shape
        return T, B, I, self.weight_hh.shape[1]


def make_problem(cell: Cell | str, T: int, B: int, I: int, H: int, dtype=torch.float64,
                 bias: bool = True, h0: bool = True, c0: bool | None = None,
                 layout: str = "contiguous", seed: int = 0, requires_grad: bool = True) -> Problem:
    """Random input, states and weights (torch.nn's init range) of one layer.
    c0 defaults to h0 for the LSTM and is always absent for the other cells."""
    cell = CELLS[cell] if isinstance(cell, str) else cell
    c0 = (h0 if c0 is None else c0) and cell.is_lstm
    gen = torch.Generator().manual_seed(seed)
    k = H ** -0.5
    G = cell.gates

    def rand(*shape, scale=1.0, uniform=False, is_input=False):
        if uniform:
            values = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
        else:
            values = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return _strided_view(values.to(dtype), layout, is_input).requires_grad_(requires_grad)

    return Problem(
        cell=cell,
        input=rand(T, B, I, is_input=True),
        h0=rand(B, H, scale=0.5) if h0 else None,
        c0=rand(B, H, scale=0.5) if c0 else None,
        weight_ih=rand(G * H, I, scale=k, uniform=True),
        weight_hh=rand(G * H, H, scale=k, uniform=True),
        bias_ih=rand(G * H, scale=k, uniform=True) if bias else None,
        bias_hh=rand(G * H, scale=k, uniform=True) if bias else None,
    )


def without_grad(problem: Problem) -> Problem:
    """The same tensors detached (same layout), for calls that must not record a graph."""
    return replace(problem, **{n: t.detach() for n, t in problem.tensors().items()
                               if t is not None})


def random_upstream(problem: Problem, outputs_used=None, seed: int = 1) -> dict[str, Tensor]:
    """Random gradients for the outputs in outputs_used (default: all of the cell's outputs)."""
    T, B, _, H = problem.sizes
    gen = torch.Generator().manual_seed(seed)
    shapes = {"output": (T, B, H), "h_n": (B, H), "c_n": (B, H)}
    used = problem.cell.outputs() if outputs_used is None else outputs_used
    return {name: torch.randn(*shapes[name], generator=gen, dtype=torch.float64)
            .to(problem.input.dtype) for name in used}


def _run_torch_nn(problem: Problem):
    """torch.nn's layer with the problem's weights copied in; returns outputs and the leaves."""
    cell, p = problem.cell, problem
    T, B, I, H = problem.sizes
    module = cell.torch_nn(I, H, bias=p.bias_ih is not None, dtype=p.input.dtype)
    params = {"weight_ih": module.weight_ih_l0, "weight_hh": module.weight_hh_l0}
    if p.bias_ih is not None:
        params.update(bias_ih=module.bias_ih_l0, bias_hh=module.bias_hh_l0)
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(getattr(p, name))
    zeros = p.input.new_zeros(B, H)
    h0 = (zeros if p.h0 is None else p.h0).unsqueeze(0)
    if cell.is_lstm:
        c0 = (zeros if p.c0 is None else p.c0).unsqueeze(0)
        output, (h_n, c_n) = module(p.input, (h0, c0))
        outputs = (output, h_n.squeeze(0), c_n.squeeze(0))
    else:
        output, h_n = module(p.input, h0)
        outputs = (output, h_n.squeeze(0))
    leaves = {"input": p.input, "h0": p.h0, "c0": p.c0, **params}
    return outputs, leaves


def run(impl: str, problem: Problem, upstream: dict[str, Tensor]):
    """Forward through impl ("fastrnn", "reference" or "torch.nn"), then backward of
    sum(output * upstream[output]) over the outputs in upstream.

    Returns ({output name: value}, {input name: gradient}) with the gradients of every tensor of
    the problem that is not None; no gradients for an empty upstream."""
    if impl == "torch.nn":
        outputs, leaves = _run_torch_nn(problem)
    else:
        module = {"fastrnn": fastrnn.functional, "reference": fastrnn.reference}[impl]
        outputs = problem.cell.call(module, *problem.args())
        leaves = problem.tensors()
    outputs = dict(zip(problem.cell.outputs(), outputs))
    if not upstream:
        return {k: v.detach() for k, v in outputs.items()}, {}
    names = [name for name, t in leaves.items() if t is not None]
    grads = torch.autograd.grad([outputs[name] for name in upstream],
                                [leaves[name] for name in names], list(upstream.values()))
    return ({k: v.detach() for k, v in outputs.items()}, dict(zip(names, grads)))


def config_ids(value) -> str:
    """pytest ids for parametrized (mode, config) cases: a config dict as k=v pairs."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "default"
    return str(value)
