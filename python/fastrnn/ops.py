"""Python side of the ``torch.ops.fastrnn`` ops: their fake (meta) kernels.

The ops, their CPU kernels and their autograd are defined in ``csrc/ops.cpp`` (schemas there);
their contract is in ``docs/stack-op.md``.
"""

from __future__ import annotations

import torch

from . import _C


def _check_one_device(*tensors) -> None:
    # The C++ kernels check this too; a mix with a meta tensor dispatches here instead.
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise RuntimeError(f"fastrnn: all tensors must be on one device, got {names}")


def _sizes(mode, input, batch_sizes, hx, weights, bidirectional, proj_size):
    """(rows of the output shape, N, B, H, P, D) of a call; B from hx for packed input."""
    gates, _ = _C.cell_shape(mode)
    H = weights[1].shape[0] // gates
    P = proj_size if proj_size > 0 else H
    D = 2 if bidirectional else 1
    if batch_sizes is not None:
        rows = (input.shape[0],)
        N = input.shape[0]
    else:
        rows = (input.shape[0], input.shape[1])
        N = input.shape[0] * input.shape[1]
    B = hx.shape[1] if hx is not None else input.shape[1]
    return rows, N, B, H, P, D


@torch.library.register_fake("fastrnn::rnn")
def _rnn_fake(mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers, bidirectional,
              proj_size, dropout_masks, training, *options, **named_options):
    # options (grad_clip, ...: the cells' options of csrc/cells/options.h) change no shape
    _check_one_device(input, hx, cx, dropout_masks, *weights)
    if batch_sizes is not None and hx is None:
        raise ValueError("fastrnn: packed input needs hx (zeros if none)")
    rows, N, B, H, P, D = _sizes(mode, input, batch_sizes, hx, weights, bidirectional, proj_size)
    output = input.new_empty((*rows, D * P))
    h_n = input.new_empty((num_layers * D, B, P))
    c_n = input.new_empty((num_layers * D, B, H)) if mode == "lstm" else input.new_empty((0,))
    if training:
        reserve = input.new_empty((N, _C.reserve_width(mode, num_layers, D, H, proj_size)))
    else:
        reserve = input.new_empty((0,))
    return output, h_n, c_n, reserve


@torch.library.register_fake("fastrnn::rnn_backward")
def _rnn_backward_fake(mode, grad_output, grad_h_n, grad_c_n, input, batch_sizes, hx, cx, weights,
                       has_bias, num_layers, bidirectional, proj_size, dropout_masks, output,
                       reserve, input_needs_grad=True, hx_needs_grad=True, *options,
                       **named_options):
    _check_one_device(input, hx, cx, dropout_masks, output, reserve, *weights)
    _, _, B, H, P, D = _sizes(mode, input, batch_sizes, hx, weights, bidirectional, proj_size)
    return (
        input.new_empty(input.shape) if input_needs_grad else input.new_empty((0,)),
        input.new_empty((num_layers * D, B, P)) if hx_needs_grad else input.new_empty((0,)),
        input.new_empty((num_layers * D, B, H)) if mode == "lstm" else input.new_empty((0,)),
        [w.new_empty(w.shape) for w in weights],
    )
