"""One recurrent layer, one direction, on tensors, with torch.nn's weight shapes and gate order.

Shapes: input ``[T, B, I]``; h0, c0 ``[B, H]`` or ``None`` for zeros; weight_ih ``[G*H, I]``,
weight_hh ``[G*H, H]``, biases ``[G*H]`` or ``None``, with G = 4 (LSTM: i f g o), 3 (GRU: r z n),
1 (RNN). Returns output ``[T, B, H]`` and the final states ``[B, H]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import ops  # noqa: F401  (registers the autograd of torch.ops.fastrnn.forward)

_RNN_MODES = {"tanh": "rnn_tanh", "relu": "rnn_relu"}


def _forward(mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    # Save what backward needs only when a gradient can flow; inference saves nothing.
    training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad
        for t in (input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
    )
    return torch.ops.fastrnn.forward(
        mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, training)


def lstm(input: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
         weight_hh: Tensor, bias_ih: Tensor | None = None,
         bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer. Returns ``(output, h_n, c_n)``."""
    output, h_n, c_n, _ = _forward("lstm", input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
    return output, h_n, c_n


def gru(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer, torch.nn.GRU's formulation. Returns ``(output, h_n)``."""
    output, h_n, _, _ = _forward("gru", input, h0, None, weight_ih, weight_hh, bias_ih, bias_hh)
    return output, h_n


def rnn(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
        nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """Elman RNN layer, ``nonlinearity`` "tanh" or "relu". Returns ``(output, h_n)``."""
    if nonlinearity not in _RNN_MODES:
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    output, h_n, _, _ = _forward(_RNN_MODES[nonlinearity], input, h0, None, weight_ih, weight_hh,
                                 bias_ih, bias_hh)
    return output, h_n


__all__ = ["lstm", "gru", "rnn"]
