"""One recurrent layer, one direction, on tensors, with torch.nn's weight shapes and gate order.

Shapes: input ``[T, B, I]``; h0, c0 ``[B, H]`` or ``None`` for zeros; weight_ih ``[G*H, I]``,
weight_hh ``[G*H, H]``, biases ``[G*H]`` or ``None``, with G = 4 (LSTM: i f g o), 3 (GRU: r z n),
1 (RNN). Returns output ``[T, B, H]`` and the final states ``[B, H]``. float32, float64, bfloat16
or float16 (the 16-bit types computed in float32: state, gate math and sums), every
tensor of one dtype, on the CPU (CUDA tensors raise: fastrnn has no CUDA kernels enabled
yet).
``rnn_stack`` runs a whole multi-layer, bidirectional, padded or packed stack in one call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _C
from . import ops  # noqa: F401  (registers the fake kernels of torch.ops.fastrnn.*)

_RNN_MODES = {"tanh": "rnn_tanh", "relu": "rnn_relu"}
# G of each mode, from the kernels' list of modes; a dict rather than calls, which
# torch.compile cannot trace
_GATES = {mode: _C.cell_shape(mode)[0] for mode in _C.modes}


def rnn_stack(mode: str, input: Tensor, batch_sizes: Tensor | None, hx: Tensor | None,
              cx: Tensor | None, weights: list[Tensor], *, has_bias: bool, num_layers: int,
              bidirectional: bool, proj_size: int = 0, dropout_masks: Tensor | None = None,
              training: bool | None = None, norms_probe: Tensor | None = None,
              **options) -> tuple[Tensor, Tensor, Tensor]:
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
    packed (sorted) order. ``options`` are the cells' options, each a float or None (off):
    ``grad_clip`` clamps the gradient of every gate pre-activation to [-grad_clip, grad_clip] at
    every step of backward (Graves 2013); ``cell_clip`` (LSTM) clamps the cell state to
    [-cell_clip, cell_clip] in forward, with a zero gradient where it clamps. ``norms_probe``:
    None, or a float32 ``[2, L*D, T]`` tensor requiring grad whose gradient, after backward,
    holds the norms backward recorded (not a derivative): ``[0, k, t]`` the Frobenius norm of the
    total dL/dh_t that step t of layer/direction k received (over its active rows and units),
    ``[1, k, t]`` that of dL/dc_t (LSTM; zero for the others). The modules' record_grad_norms.

    Returns ``(output, h_n, c_n)``: output ``[T, B, D*P]`` (packed ``[N, D*P]``), h_n
    ``[L*D, B, P]``, c_n ``[L*D, B, H]``, an empty tensor unless mode is "lstm". The full contract
    is docs/stack-op.md in fastrnn's source repository."""
    if batch_sizes is not None and hx is None:  # the op needs B, which packed data cannot give
        hx = _zero_state(input, batch_sizes, weights, num_layers, bidirectional, proj_size)
    # Save what backward needs only when a gradient can flow; inference saves nothing.
    if training is None:
        training = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (input, hx, cx, *weights))
    # only the options given: keyword arguments slow every op call down (~20 us at T=B=1)
    extra = {name: value for name, value in options.items() if value is not None}
    if norms_probe is not None:
        extra["norms_probe"] = norms_probe
    output, h_n, c_n, _ = torch.ops.fastrnn.rnn(
        mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers, bidirectional, proj_size,
        dropout_masks, training, **extra)
    return output, h_n, c_n


def _zero_state(input, batch_sizes, weights, num_layers, bidirectional, proj_size):
    """Zeros [L*D, B, P] for packed input without hx, read from arguments not yet checked: where
    one is malformed, a size of 0 stands in and the op's checks name the argument. An expanded
    scalar: nothing is allocated whatever the sizes."""
    B = (int(batch_sizes[0]) if batch_sizes.dim() == 1 and batch_sizes.numel() > 0
         and batch_sizes.device.type == "cpu" else 0)
    P = proj_size or (weights[1].shape[1] if len(weights) > 1 and weights[1].dim() == 2 else 0)
    layers = num_layers * (2 if bidirectional else 1)
    return input.new_zeros(()).expand(layers if 0 < layers < 2**63 else 0, max(B, 0), max(P, 0))


def _layer(mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, **options):
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
        bidirectional=False, **options)
    return output, h_n.squeeze(0), c_n.squeeze(0) if mode == "lstm" else c_n


def lstm(input: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
         weight_hh: Tensor, bias_ih: Tensor | None = None, bias_hh: Tensor | None = None, *,
         grad_clip: float | None = None,
         cell_clip: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer, one direction, forward and backward on fastrnn's fused CPU kernels.

    Args:
        input: ``[T, B, I]``, time-major (``x.transpose(0, 1)`` of a batch-first tensor).
        h0, c0: initial hidden and cell state ``[B, H]``, or ``None`` for zeros.
        weight_ih: ``[4*H, I]``, weight_hh: ``[4*H, H]``, gates in torch.nn's order i, f, g, o
            (``torch.nn.LSTM``'s ``weight_ih_l0`` and ``weight_hh_l0`` as they are).
        bias_ih, bias_hh: ``[4*H]`` each, or both ``None`` for no bias.
        grad_clip, cell_clip: the cells' options (``rnn_stack``), ``None`` for off.

    Every tensor float32, float64, bfloat16 or float16, one dtype, on the CPU; strided views are accepted.
    Gradients flow to every tensor that requires grad; under ``torch.no_grad()`` or when none
    does, nothing is saved for backward.

    Returns:
        ``(output, h_n, c_n)``: output ``[T, B, H]`` (h at every step), h_n and c_n ``[B, H]``.

    Example::

        lstm = torch.nn.LSTM(256, 512)
        x = torch.randn(100, 32, 256)
        out, h_n, c_n = fastrnn.functional.lstm(x, None, None, lstm.weight_ih_l0,
                                                lstm.weight_hh_l0, lstm.bias_ih_l0,
                                                lstm.bias_hh_l0)
    """
    return _layer("lstm", input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh,
                  grad_clip=grad_clip, cell_clip=cell_clip)


def gru(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None, *,
        grad_clip: float | None = None) -> tuple[Tensor, Tensor]:
    """One GRU layer, one direction, torch.nn.GRU's formulation
    (``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``), on fastrnn's fused CPU kernels.

    Args as ``lstm``'s without c0: input ``[T, B, I]``; h0 ``[B, H]`` or ``None`` for zeros;
    weight_ih ``[3*H, I]``, weight_hh ``[3*H, H]`` (gates r, z, n); bias_ih, bias_hh ``[3*H]`` or
    both ``None``; grad_clip as ``lstm``'s. float32, float64, bfloat16 or float16, on the CPU.

    Returns ``(output, h_n)``: output ``[T, B, H]``, h_n ``[B, H]``.

    Example::

        gru = torch.nn.GRU(64, 128)
        out, h_n = fastrnn.functional.gru(torch.randn(10, 4, 64), None, gru.weight_ih_l0,
                                          gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    """
    output, h_n, _ = _layer("gru", input, h0, None, weight_ih, weight_hh, bias_ih, bias_hh,
                            grad_clip=grad_clip)
    return output, h_n


def rnn(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
        nonlinearity: str = "tanh", *, grad_clip: float | None = None) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer, one direction, ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with
    ``nonlinearity`` (act) "tanh" or "relu", on fastrnn's fused CPU kernels.

    Args as ``gru``'s with G = 1: input ``[T, B, I]``; h0 ``[B, H]`` or ``None`` for zeros;
    weight_ih ``[H, I]``, weight_hh ``[H, H]``; bias_ih, bias_hh ``[H]`` or both ``None``;
    grad_clip as ``lstm``'s. float32, float64, bfloat16 or float16, on the CPU.

    Returns ``(output, h_n)``: output ``[T, B, H]``, h_n ``[B, H]``.

    Example::

        rnn = torch.nn.RNN(64, 128, nonlinearity="relu")
        out, h_n = fastrnn.functional.rnn(torch.randn(10, 4, 64), None, rnn.weight_ih_l0,
                                          rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0,
                                          nonlinearity="relu")
    """
    if nonlinearity not in _RNN_MODES:
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    output, h_n, _ = _layer(_RNN_MODES[nonlinearity], input, h0, None, weight_ih, weight_hh,
                            bias_ih, bias_hh, grad_clip=grad_clip)
    return output, h_n


__all__ = ["lstm", "gru", "rnn", "rnn_stack"]
