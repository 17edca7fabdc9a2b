"""Python side of the ``torch.ops.fastrnn`` ops: fake (meta) kernels and autograd.

The ops and their CPU kernels are defined in ``csrc/ops.cpp`` (schemas there); their contract is
in ``docs/stack-op.md``.
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
              proj_size, dropout_masks, training):
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
                       reserve):
    _check_one_device(input, hx, cx, dropout_masks, output, reserve, *weights)
    _, _, B, H, P, D = _sizes(mode, input, batch_sizes, hx, weights, bidirectional, proj_size)
    return (
        input.new_empty(input.shape),
        input.new_empty((num_layers * D, B, P)),
        input.new_empty((num_layers * D, B, H)) if mode == "lstm" else input.new_empty((0,)),
        [w.new_empty(w.shape) for w in weights],
    )


_ARGS = ("mode", "input", "batch_sizes", "hx", "cx", "weights", "has_bias", "num_layers",
         "bidirectional", "proj_size", "dropout_masks", "training")


def _setup_context(ctx, inputs, output):
    args = dict(zip(_ARGS, inputs))
    out, _, _, reserve = output
    ctx.config = {k: args[k] for k in ("mode", "has_bias", "num_layers", "bidirectional",
                                      "proj_size")}
    ctx.trained = args["training"]
    ctx.has_hx, ctx.has_cx = args["hx"] is not None, args["cx"] is not None
    ctx.num_weights = len(args["weights"])
    ctx.save_for_backward(args["input"], args["batch_sizes"], args["hx"], args["cx"],
                          args["dropout_masks"], out, reserve, *args["weights"])
    ctx.mark_non_differentiable(reserve)
    ctx.set_materialize_grads(False)  # the kernel reads an absent gradient as zero


def _backward(ctx, grad_output, grad_h_n, grad_c_n, _grad_reserve):
    if not ctx.trained:
        raise RuntimeError(
            "fastrnn: backward through a forward that ran with training=False; "
            "call it with training=True (fastrnn.functional does so when grad is enabled)"
        )
    input, batch_sizes, hx, cx, dropout_masks, out, reserve, *weights = ctx.saved_tensors
    c = ctx.config
    grad_input, grad_hx, grad_cx, grad_weights = torch.ops.fastrnn.rnn_backward(
        c["mode"], grad_output, grad_h_n, grad_c_n if c["mode"] == "lstm" else None, input,
        batch_sizes, hx, cx, weights, c["has_bias"], c["num_layers"], c["bidirectional"],
        c["proj_size"], dropout_masks, out, reserve)
    return (
        None,  # mode
        grad_input,
        None,  # batch_sizes
        grad_hx if ctx.has_hx else None,
        grad_cx if ctx.has_cx else None,
        list(grad_weights),
        None, None, None, None,  # has_bias, num_layers, bidirectional, proj_size
        None,  # dropout_masks
        None,  # training
    )


torch.library.register_autograd("fastrnn::rnn", _backward, setup_context=_setup_context)
