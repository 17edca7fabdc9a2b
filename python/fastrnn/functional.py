"""One recurrent layer, one direction, on tensors, with torch.nn's weight shapes and gate order.

Shapes: input ``[T, B, I]``; h0, c0 ``[B, H]`` or ``None`` for zeros; weight_ih ``[G*H, I]``,
weight_hh ``[G*H, H]``, biases ``[G*H]`` or ``None``, with G = 4 (LSTM: i f g o), 3 (GRU: r z n),
1 (RNN). Returns output ``[T, B, H]`` and the final states ``[B, H]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _C
from . import ops  # noqa: F401  (registers the fake kernels of torch.ops.fastrnn.*)

_RNN_MODES = {"tanh": "rnn_tanh", "relu": "rnn_relu"}
# G of each mode, from the kernels; a dict rather than calls, which torch.compile cannot trace
_GATES = {mode: _C.cell_shape(mode)[0] for mode in ("lstm", "gru", "rnn_tanh", "rnn_relu")}


def rnn_stack(mode: str, input: Tensor, batch_sizes: Tensor | None, hx: Tensor | None,
              cx: Tensor | None, weights: list[Tensor], *, has_bias: bool, num_layers: int,
              bidirectional: bool, proj_size: int = 0, dropout_masks: Tensor | None = None,
              training: bool | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A whole torch.nn-style stack (every layer and direction, padded or packed) in one op call.

    ``mode``: "lstm", "gru", "rnn_tanh" or "rnn_relu". ``input``: padded ``[T, B, I]``
    (time-major), or with ``batch_sizes`` (a PackedSequence's, int64 on the CPU) packed data
    ``[N, I]``. ``hx`` ``[L*D, B, P]``, ``cx`` ``[L*D, B, H]`` (LSTM only) or ``None`` for zeros,
    with L = num_layers, D = 2 if bidirectional else 1, P = proj_size or H. ``weights``: torch.nn's
    ``_flat_weights`` order (per layer, per direction: w_ih, w_hh, then b_ih, b_hh if has_bias,
    then w_hr if proj_size). ``dropout_masks``: the masks applied between layers, already scaled by
    1/(1-p), ``[L-1, T, B, D*P]`` (packed ``[L-1, N, D*P]``), or None. ``training``: whether
    forward saves what backward needs; None (default) decides it: when grad is enabled and a
    tensor requires grad. False saves nothing (backward then raises), as an export of an
    ``eval()`` module records. With packed input the rows of hx and of the results are in the
    packed (sorted) order.

    Returns ``(output, h_n, c_n)``: output ``[T, B, D*P]`` (packed ``[N, D*P]``), h_n
    ``[L*D, B, P]``, c_n ``[L*D, B, H]``, an empty tensor unless mode is "lstm". The full contract
    is docs/stack-op.md in fastrnn's source repository."""
    if batch_sizes is not None and hx is None:  # the op needs B, which packed data cannot give
        directions = 2 if bidirectional else 1
        hx = input.new_zeros(num_layers * directions, int(batch_sizes[0]), weights[1].shape[1])
    # Save what backward needs only when a gradient can flow; inference saves nothing.
    if training is None:
        training = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (input, hx, cx, *weights))
    output, h_n, c_n, _ = torch.ops.fastrnn.rnn(
        mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers, bidirectional, proj_size,
        dropout_masks, training)
    return output, h_n, c_n


def _layer(mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    """One layer, one direction: the stack op with L = D = 1 and [B, H] states."""
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError("fastrnn: give both bias_ih and bias_hh or neither")
    # Name h0 and c0 as this API does; anything else (weight_hh too) the op checks and names.
    if (input.dim() == 3 and weight_hh.dim() == 2
            and weight_hh.shape[0] == _GATES[mode] * weight_hh.shape[1]):
        expected = (input.shape[1], weight_hh.shape[1])
        for name, state in (("h0", h0), ("c0", c0)):
            if state is not None and tuple(state.shape) != expected:
                raise ValueError(f"fastrnn: {name} must have shape [B, H] = "
                                 f"[{expected[0]}, {expected[1]}], got {list(state.shape)}")
    has_bias = bias_ih is not None
    weights = [weight_ih, weight_hh] + ([bias_ih, bias_hh] if has_bias else [])
    output, h_n, c_n = rnn_stack(
        mode, input, None, None if h0 is None else h0.unsqueeze(0),
        None if c0 is None else c0.unsqueeze(0), weights, has_bias=has_bias, num_layers=1,
        bidirectional=False)
    return output, h_n.squeeze(0), c_n.squeeze(0) if mode == "lstm" else c_n


def lstm(input: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
         weight_hh: Tensor, bias_ih: Tensor | None = None,
         bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer. Returns ``(output, h_n, c_n)``."""
    return _layer("lstm", input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)


def gru(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer, torch.nn.GRU's formulation. Returns ``(output, h_n)``."""
    output, h_n, _ = _layer("gru", input, h0, None, weight_ih, weight_hh, bias_ih, bias_hh)
    return output, h_n


def rnn(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
        nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """Elman RNN layer, ``nonlinearity`` "tanh" or "relu". Returns ``(output, h_n)``."""
    if nonlinearity not in _RNN_MODES:
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    output, h_n, _ = _layer(_RNN_MODES[nonlinearity], input, h0, None, weight_ih, weight_hh,
                            bias_ih, bias_hh)
    return output, h_n


__all__ = ["lstm", "gru", "rnn", "rnn_stack"]
