"""The cells, the implementations under test, and the steps the timer calls.

A workload is one cell at the run's shape: a 1-layer torch.nn module, whose parameters every
implementation uses, an input and fixed output gradients. An implementation turns it into a forward
``input -> (output, h_n)``, with ``h_n`` in that implementation's own shape (``[1, B, H]`` for torch.nn,
``[B, H]`` for fastrnn); a mode turns a forward into a step, a call with no arguments that the timer runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .. import functional as F
from .timing import Step

Forward = Callable[[Tensor], "tuple[Tensor, Tensor]"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MODES = ("inference", "train")


def _weights(module: nn.RNNBase) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0


def _fastrnn_lstm(x: Tensor, module: nn.RNNBase) -> tuple[Tensor, Tensor]:
    output, h_n, _ = F.lstm(x, None, None, *_weights(module))
    return output, h_n


def _fastrnn_gru(x: Tensor, module: nn.RNNBase) -> tuple[Tensor, Tensor]:
    return F.gru(x, None, *_weights(module))


def _fastrnn_rnn(nonlinearity: str) -> Callable[[Tensor, nn.RNNBase], tuple[Tensor, Tensor]]:
    def run(x: Tensor, module: nn.RNNBase) -> tuple[Tensor, Tensor]:
        return F.rnn(x, None, *_weights(module), nonlinearity=nonlinearity)
    return run


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int  # G: rows of weight_ih are G*H
    make_module: Callable[[int, int], nn.RNNBase]  # (I, H) -> a 1-layer unidirectional module
    fastrnn: Callable[[Tensor, nn.RNNBase], tuple[Tensor, Tensor]]  # (input, module) -> (output, h_n)


CELLS = {
    "lstm": Cell("lstm", 4, lambda i, h: nn.LSTM(i, h), _fastrnn_lstm),
    "gru": Cell("gru", 3, lambda i, h: nn.GRU(i, h), _fastrnn_gru),
    "rnn_tanh": Cell("rnn_tanh", 1, lambda i, h: nn.RNN(i, h, nonlinearity="tanh"),
                     _fastrnn_rnn("tanh")),
    "rnn_relu": Cell("rnn_relu", 1, lambda i, h: nn.RNN(i, h, nonlinearity="relu"),
                     _fastrnn_rnn("relu")),
}


@dataclass
class Workload:
    cell: Cell
    module: nn.RNNBase
    input: Tensor  # [T, B, I], requires grad: train mode computes the input gradient too
    grad_output: Tensor  # [T, B, H], the gradient of the loss with respect to output
    grad_h_n: Tensor  # [B, H], the gradient of the loss with respect to h_n

    def leaves(self) -> list[Tensor]:
        """The tensors a train step computes gradients for: the input, then the parameters."""
        return [self.input, *self.module.parameters()]


def make_workload(cell: Cell, T: int, B: int, I: int, H: int, dtype: torch.dtype,  # noqa: E741
                  seed: int) -> Workload:
    """Seeded per cell, so a cell's numbers do not depend on which other cells run."""
    torch.manual_seed(seed)
    module = cell.make_module(I, H).to(dtype)
    return Workload(
        cell=cell,
        module=module,
        input=torch.randn(T, B, I, dtype=dtype, requires_grad=True),
        grad_output=torch.randn(T, B, H, dtype=dtype),
        grad_h_n=torch.randn(B, H, dtype=dtype),
    )


def _torch_forward(workload: Workload) -> Forward:
    module = workload.module

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        output, state = module(x)
        return output, state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
    return forward


def _fastrnn_forward(workload: Workload) -> Forward:
    cell, module = workload.cell, workload.module
    return lambda x: cell.fastrnn(x, module)


IMPLS: dict[str, Callable[[Workload], Forward]] = {
    "torch": _torch_forward,
    "fastrnn": _fastrnn_forward,
}
BASELINE = "torch"  # the implementation the others are checked and compared against


def inference_step(forward: Forward, workload: Workload) -> Step:
    x = workload.input

    def step() -> None:
        with torch.inference_mode():
            forward(x)
    return step


def train_step(forward: Forward, workload: Workload) -> Step:
    """Forward, then backward of a loss on output and h_n; gradients reset as zero_grad(set_to_none)."""
    x, leaves = workload.input, workload.leaves()
    grad_output, grad_h_n = workload.grad_output, workload.grad_h_n

    def step() -> None:
        for t in leaves:
            t.grad = None
        output, h_n = forward(x)
        torch.autograd.backward((output, h_n), (grad_output, grad_h_n.view_as(h_n)))
    return step


STEPS: dict[str, Callable[[Forward, Workload], Step]] = {
    "inference": inference_step,
    "train": train_step,
}

FLOP_MODEL = (
    "GFLOP/s counts the GEMMs only: forward = 2*T*B*G*H*(I+H) with G = 4 (lstm), 3 (gru), "
    "1 (rnn); train = 3 x forward (forward, then the input/state gradient GEMMs and the "
    "weight gradient GEMMs); pointwise math is not counted"
)


def flop_count(cell: Cell, mode: str, T: int, B: int, I: int, H: int) -> float:  # noqa: E741
    """FLOPs of one step by FLOP_MODEL."""
    forward = 2.0 * T * B * cell.gates * H * (I + H)
    return forward if mode == "inference" else 3.0 * forward
