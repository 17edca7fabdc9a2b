"""Pure-PyTorch, step-by-step LSTM, GRU and RNN layers: the ground truth of fastrnn's tests.

Same signatures, shapes and return values as ``fastrnn.functional``; differentiable by autograd.
Each step t maps the input x = input[t] and the previous state (h, c) to the next one, with
``W_ih x`` meaning ``x @ weight_ih.T``, weights and biases split into their gates in torch.nn's
order, and an absent bias or initial state read as zero:

LSTM, gates (i, f, g, o):
    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                              h' = o * tanh(c')
GRU, gates (r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
RNN:
    h' = act(W_ih x + b_ih + W_hh h + b_hh),        act = tanh or relu

output[t] is h after step t; h_n (and c_n) the state after the last step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    y = x @ weight.T
    return y if bias is None else y + bias


def _state(state: Tensor | None, input: Tensor, weight_hh: Tensor) -> Tensor:
    return input.new_zeros(input.shape[1], weight_hh.shape[1]) if state is None else state


def lstm(input: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
         weight_hh: Tensor, bias_ih: Tensor | None = None,
         bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer. Returns ``(output, h_n, c_n)``."""
    h, c = _state(h0, input, weight_hh), _state(c0, input, weight_hh)
    outputs = []
    for x in input:
        pre = _affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh)
        i, f, g, o = pre.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), h, c


def gru(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer, torch.nn.GRU's formulation. Returns ``(output, h_n)``."""
    h = _state(h0, input, weight_hh)
    outputs = []
    for x in input:
        xr, xz, xn = _affine(x, weight_ih, bias_ih).chunk(3, dim=1)
        hr, hz, hn = _affine(h, weight_hh, bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs), h


def rnn(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
        nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """Elman RNN layer, ``nonlinearity`` "tanh" or "relu". Returns ``(output, h_n)``."""
    activations = {"tanh": torch.tanh, "relu": torch.relu}
    if nonlinearity not in activations:
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    act = activations[nonlinearity]
    h = _state(h0, input, weight_hh)
    outputs = []
    for x in input:
        h = act(_affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh))
        outputs.append(h)
    return torch.stack(outputs), h


__all__ = ["lstm", "gru", "rnn"]
