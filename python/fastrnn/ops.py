"""Python side of the ``torch.ops.fastrnn`` ops: fake (meta) kernels and autograd.

The ops and their CPU kernels are defined in ``csrc/ops.cpp``; see the schemas there.
"""

from __future__ import annotations

import torch

from . import _C


def _check_one_device(*tensors: torch.Tensor | None) -> None:
    # The C++ kernels check this too; a mix with a meta tensor dispatches here instead.
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise RuntimeError(f"fastrnn: all tensors must be on one device, got {names}")


@torch.library.register_fake("fastrnn::forward")
def _forward_fake(mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, training):
    _check_one_device(input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
    _, saved_per_unit = _C.cell_shape(mode)
    T, B, _ = input.shape
    H = weight_hh.shape[1]
    output = input.new_empty((T, B, H))
    h_n = input.new_empty((B, H))
    c_n = input.new_empty((B, H)) if mode == "lstm" else input.new_empty((0,))
    if training and saved_per_unit > 0:
        saved = input.new_empty((T, B, saved_per_unit * H))
    else:
        saved = input.new_empty((0,))
    return output, h_n, c_n, saved


@torch.library.register_fake("fastrnn::backward")
def _backward_fake(mode, grad_output, grad_h_n, grad_c_n, input, h0, c0, weight_ih, weight_hh,
                   has_bias, output, saved):
    _check_one_device(input, h0, c0, weight_ih, weight_hh, output, saved)
    gates, _ = _C.cell_shape(mode)
    B, H = input.shape[1], weight_hh.shape[1]
    empty = input.new_empty((0,))
    return (
        torch.empty_like(input, memory_format=torch.contiguous_format),
        input.new_empty((B, H)),
        input.new_empty((B, H)) if mode == "lstm" else empty,
        input.new_empty(weight_ih.shape),
        input.new_empty(weight_hh.shape),
        input.new_empty((gates * H,)) if has_bias else input.new_empty((0,)),
        input.new_empty((gates * H,)) if has_bias else input.new_empty((0,)),
    )


def _setup_context(ctx, inputs, output):
    mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, training = inputs
    out, _, _, saved = output
    ctx.mode = mode
    ctx.has_bias = bias_ih is not None
    ctx.trained = training
    ctx.save_for_backward(input, h0, c0, weight_ih, weight_hh, out, saved)
    ctx.mark_non_differentiable(saved)
    ctx.set_materialize_grads(False)  # the kernel reads an absent gradient as zero


def _backward(ctx, grad_output, grad_h_n, grad_c_n, _grad_saved):
    if not ctx.trained:
        raise RuntimeError(
            "fastrnn: backward through a forward that ran with training=False; "
            "call it with training=True (fastrnn.functional does so when grad is enabled)"
        )
    input, h0, c0, weight_ih, weight_hh, out, saved = ctx.saved_tensors
    (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih,
     grad_b_hh) = torch.ops.fastrnn.backward(
        ctx.mode, grad_output, grad_h_n, grad_c_n if ctx.mode == "lstm" else None, input, h0, c0,
        weight_ih, weight_hh, ctx.has_bias, out, saved)
    return (
        None,  # mode
        grad_input,
        grad_h0 if h0 is not None else None,
        grad_c0 if c0 is not None else None,
        grad_w_ih,
        grad_w_hh,
        grad_b_ih if ctx.has_bias else None,
        grad_b_hh if ctx.has_bias else None,
        None,  # training
    )


torch.library.register_autograd("fastrnn::forward", _backward, setup_context=_setup_context)
