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


def _bound(op, args, kwargs) -> dict:
    """A call's arguments by name, defaults filled in, as the op's schema lists them: the cells'
    options (csrc/cells/options.h), which change no shape, come and go without a change here."""
    schema = op.default._schema.arguments
    values = {a.name: a.default_value for a in schema if a.has_default_value()}
    values.update(zip((a.name for a in schema), args))
    values.update(kwargs)
    return values


@torch.library.register_fake("fastrnn::rnn")
def _rnn_fake(*args, **kwargs):
    a = _bound(torch.ops.fastrnn.rnn, args, kwargs)
    mode, input, batch_sizes, hx, weights = (a["mode"], a["input"], a["batch_sizes"], a["hx"],
                                             a["weights"])
    num_layers, proj_size = a["num_layers"], a["proj_size"]
    _check_one_device(input, hx, a["cx"], a["dropout_masks"], *weights)
    if batch_sizes is not None and hx is None:
        raise ValueError("fastrnn: packed input needs hx (zeros if none)")
    rows, N, B, H, P, D = _sizes(mode, input, batch_sizes, hx, weights, a["bidirectional"],
                                 proj_size)
    output = input.new_empty((*rows, D * P))
    h_n = input.new_empty((num_layers * D, B, P))
    c_n = input.new_empty((num_layers * D, B, H)) if mode == "lstm" else input.new_empty((0,))
    if a["training"]:
        reserve = input.new_empty((N, _C.reserve_width(mode, num_layers, D, H, proj_size)))
    else:
        reserve = input.new_empty((0,))
    return output, h_n, c_n, reserve


@torch.library.register_fake("fastrnn::rnn_backward")
def _rnn_backward_fake(*args, **kwargs):
    a = _bound(torch.ops.fastrnn.rnn_backward, args, kwargs)
    mode, input, batch_sizes, hx, weights = (a["mode"], a["input"], a["batch_sizes"], a["hx"],
                                             a["weights"])
    num_layers = a["num_layers"]
    _check_one_device(input, hx, a["cx"], a["dropout_masks"], a["output"], a["reserve"], *weights)
    _, _, B, H, P, D = _sizes(mode, input, batch_sizes, hx, weights, a["bidirectional"],
                              a["proj_size"])
    T = batch_sizes.shape[0] if batch_sizes is not None else input.shape[0]
    norms = (2, num_layers * D, T) if a["record_norms"] else (0,)
    return (
        input.new_empty(input.shape) if a["input_needs_grad"] else input.new_empty((0,)),
        input.new_empty((num_layers * D, B, P)) if a["hx_needs_grad"] else input.new_empty((0,)),
        input.new_empty((num_layers * D, B, H)) if mode == "lstm" else input.new_empty((0,)),
        [w.new_empty(w.shape) for w in weights],
        input.new_empty(norms, dtype=torch.float32),
    )
