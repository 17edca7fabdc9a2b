"""Python side of the ``torch.ops.fastrnn`` ops: their fake (meta) kernels.

The ops, their CPU kernels and their autograd are defined in ``csrc/ops.cpp`` (schemas there);
their contract is in ``docs/stack-op.md``.
"""

from __future__ import annotations

import torch

from . import _C


# The cells' options (csrc/cells/options.h): the schema's `float?` arguments.
_OPTIONS = tuple(arg.name for arg in torch.ops.fastrnn.rnn.default._schema.arguments
                 if isinstance(arg.type, torch.OptionalType)
                 and arg.type.getElementType() == torch.FloatType.get())


def _size(n):
    """A size as the checks read it: an int, or a symbolic size's example value (its hint, read
    without adding a guard: the compiled graph stays valid for every size, and the real kernel
    checks the sizes of each call); None for a size without one (data-dependent)."""
    return n if isinstance(n, int) else n.node.hint


def _meta(t):
    """(sizes, dtype, device) of a tensor for _C.check_call, or None."""
    if t is None:
        return None
    sizes = [_size(n) for n in t.shape]
    if None in sizes:
        raise _Unknown
    return sizes, t.dtype, t.device


class _Unknown(Exception):
    """A size known only at run time: the fake leaves the checks to the real kernel."""


def _check(a, backward=()) -> None:
    """The real kernel's checks (csrc/core/checks.cpp, through _C.check_call) on the fake's
    arguments: what the op would raise, the fake raises."""
    batch_sizes = a["batch_sizes"]
    # batch_sizes' values where they exist (a real CPU tensor); a FakeTensor's or a meta
    # tensor's are unknown, and B is then hx's
    values = (batch_sizes.tolist() if type(batch_sizes) is torch.Tensor
              and batch_sizes.device.type == "cpu" and batch_sizes.dim() == 1
              and batch_sizes.dtype == torch.int64 else None)
    options = {name: a[name] for name in _OPTIONS}
    try:
        _C.check_call(a["mode"], a["has_bias"], a["num_layers"], a["bidirectional"],
                      a["proj_size"], options, _meta(a["input"]), _meta(batch_sizes), values,
                      _meta(a["hx"]), _meta(a["cx"]), [_meta(w) for w in a["weights"]],
                      _meta(a["dropout_masks"]), _meta(a.get("norms_probe")),
                      [_meta(t) for t in backward] if backward else None)
    except _Unknown:
        pass


def _sizes(mode, input, batch_sizes, hx, weights, bidirectional, proj_size):
    """(rows of the output shape, N, B, H, P, D) of a call that passed the checks; B from hx for
    packed input."""
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
    _check(a)
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
    _check(a, (a["output"], a["reserve"], a["grad_output"], a["grad_h_n"], a["grad_c_n"]))
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
