"""Pure-PyTorch, step-by-step LSTM, GRU and RNN: the ground truth of fastrnn's tests.

Same signatures, shapes and return values as ``fastrnn.functional``; differentiable by autograd.
Each step maps the input x and the previous state (h, c) to the next one, with ``W_ih x`` meaning
``x @ weight_ih.T``, weights and biases split into their gates in torch.nn's order, and an absent
bias or initial state read as zero:

LSTM, gates (i, f, g, o):
    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                              h' = o * tanh(c')
    with a projection (proj_size P > 0):            h' = W_hr (o * tanh(c')),  h of size P
GRU, gates (r, z, n):
    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
RNN:
    h' = act(W_ih x + b_ih + W_hh h + b_hh),        act = tanh or relu

Options, None for off: ``grad_clip`` clamps the gradient with respect to every gate
pre-activation (the argument of each sigmoid and tanh above, and of act) to [-grad_clip,
grad_clip] in backward (Graves 2013, section 2), by a tensor hook; ``cell_clip`` (LSTM) clamps
c' to [-cell_clip, cell_clip] in forward, by torch.clamp.

One step of one cell: ``lstm_cell``, ``gru_cell``, ``rnn_cell``. One layer in one direction over a
whole sequence: ``lstm``, ``gru``, ``rnn`` (output[t] is h after step t; h_n, c_n the state after
the last step). A whole torch.nn-style stack (layers, directions, projection, packed input,
dropout between layers): ``rnn_stack``, the contract of ``fastrnn.functional.rnn_stack``
(docs/stack-op.md in fastrnn's source repository).
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    y = x @ weight.T
    return y if bias is None else y + bias


def _clip_cell(c: Tensor, cell_clip: float | None) -> Tensor:
    return c if cell_clip is None else torch.clamp(c, -cell_clip, cell_clip)


def _clip_grad(pre: Tensor, grad_clip: float | None) -> Tensor:
    """pre itself, whose gradient is clamped to [-grad_clip, grad_clip] on its way back."""
    if grad_clip is not None and pre.requires_grad:
        pre.register_hook(lambda grad: grad.clamp(-grad_clip, grad_clip))
    return pre


# One step of each cell: x [B, I] and the state [B, P] (c: [B, H]) to the next state.

def lstm_cell(x: Tensor, h: Tensor, c: Tensor, weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
              weight_hr: Tensor | None = None, *, grad_clip: float | None = None,
              cell_clip: float | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step. Returns ``(h', c')``; with weight_hr [P, H], h' is projected to size P."""
    pre = _clip_grad(_affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh), grad_clip)
    i, f, g, o = pre.chunk(4, dim=-1)
    c = _clip_cell(torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g), cell_clip)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (h if weight_hr is None else h @ weight_hr.T), c


def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None, *,
             grad_clip: float | None = None) -> Tensor:
    """One GRU step, torch.nn.GRU's formulation. Returns h'."""
    xr, xz, xn = _affine(x, weight_ih, bias_ih).chunk(3, dim=-1)
    hr, hz, hn = _affine(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(_clip_grad(xr + hr, grad_clip))
    z = torch.sigmoid(_clip_grad(xz + hz, grad_clip))
    n = torch.tanh(_clip_grad(xn + r * hn, grad_clip))
    return (1 - z) * n + z * h


def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
             nonlinearity: str = "tanh", *, grad_clip: float | None = None) -> Tensor:
    """One Elman RNN step, ``nonlinearity`` "tanh" or "relu". Returns h'."""
    pre = _clip_grad(_affine(x, weight_ih, bias_ih) + _affine(h, weight_hh, bias_hh), grad_clip)
    return _activation(nonlinearity)(pre)


def _activation(nonlinearity: str):
    if nonlinearity not in _ACTIVATIONS:
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _ACTIVATIONS[nonlinearity]


def _step(mode: str, x: Tensor, state: tuple[Tensor, ...], weights: dict,
          options: dict) -> tuple[Tensor, ...]:
    """One step of `mode` on state (h,) or (h, c) with weights w_ih, w_hh, b_ih, b_hh, w_hr and
    the options given (not None)."""
    w = (weights["w_ih"], weights["w_hh"], weights.get("b_ih"), weights.get("b_hh"))
    if mode == "lstm":
        return lstm_cell(x, *state, *w, weights.get("w_hr"), **options)
    if mode == "gru":
        return (gru_cell(x, *state, *w, **options),)
    return (rnn_cell(x, *state, *w, nonlinearity=mode.removeprefix("rnn_"), **options),)


def _options(mode: str, grad_clip: float | None, cell_clip: float | None) -> dict:
    """The options given, checked as the kernels check them."""
    for name, value in (("grad_clip", grad_clip), ("cell_clip", cell_clip)):
        if value is not None and not value > 0:
            raise ValueError(f"fastrnn: {name} must be > 0 (or None), got {value}")
    if cell_clip is not None and mode != "lstm":
        raise ValueError(f"fastrnn: cell_clip is only for mode 'lstm', not {mode!r}")
    options = {"grad_clip": grad_clip, "cell_clip": cell_clip}
    return {name: value for name, value in options.items() if value is not None}


def _sweep(mode: str, steps: list[Tensor], state: tuple[Tensor, ...], weights: dict,
           reverse: bool = False, options: dict | None = None
           ) -> tuple[list[Tensor], tuple[Tensor, ...]]:
    """One layer in one direction over the steps x_t [B_t, I], B_t non-increasing in t (all equal
    for padded input; packed input: the sequences still running at t are the first B_t rows).
    Step t updates the first B_t rows of the state and leaves the others as they are, so a
    sequence's final state is the one after its own last step and, in reverse, each sequence
    starts from its initial state at its own end. Returns the outputs h_t [B_t, P] in time order
    and the final state."""
    outputs = [None] * len(steps)
    for t in (reversed(range(len(steps))) if reverse else range(len(steps))):
        rows = steps[t].shape[0]
        new = _step(mode, steps[t], tuple(s[:rows] for s in state), weights, options or {})
        state = tuple(torch.cat([n, s[rows:]]) for n, s in zip(new, state))
        outputs[t] = new[0]
    return outputs, state


def _initial_state(state: Tensor | None, input: Tensor, size: int) -> Tensor:
    return input.new_zeros(input.shape[1], size) if state is None else state


def lstm(input: Tensor, h0: Tensor | None, c0: Tensor | None, weight_ih: Tensor,
         weight_hh: Tensor, bias_ih: Tensor | None = None, bias_hh: Tensor | None = None, *,
         grad_clip: float | None = None,
         cell_clip: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer, step by step: ``fastrnn.functional.lstm``'s arguments, shapes and results.
    Returns ``(output, h_n, c_n)``."""
    options = _options("lstm", grad_clip, cell_clip)
    H = weight_hh.shape[1]
    state = (_initial_state(h0, input, H), _initial_state(c0, input, H))
    weights = {"w_ih": weight_ih, "w_hh": weight_hh, "b_ih": bias_ih, "b_hh": bias_hh}
    outputs, (h, c) = _sweep("lstm", list(input), state, weights, options=options)
    return torch.stack(outputs), h, c


def gru(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None, *,
        grad_clip: float | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer, torch.nn.GRU's formulation, step by step: ``fastrnn.functional.gru``'s
    arguments, shapes and results. Returns ``(output, h_n)``."""
    options = _options("gru", grad_clip, None)
    state = (_initial_state(h0, input, weight_hh.shape[1]),)
    weights = {"w_ih": weight_ih, "w_hh": weight_hh, "b_ih": bias_ih, "b_hh": bias_hh}
    outputs, (h,) = _sweep("gru", list(input), state, weights, options=options)
    return torch.stack(outputs), h


def rnn(input: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
        bias_ih: Tensor | None = None, bias_hh: Tensor | None = None,
        nonlinearity: str = "tanh", *, grad_clip: float | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN layer, ``nonlinearity`` "tanh" or "relu", step by step:
    ``fastrnn.functional.rnn``'s arguments, shapes and results. Returns ``(output, h_n)``."""
    _activation(nonlinearity)  # reject an unknown nonlinearity before any work
    options = _options(f"rnn_{nonlinearity}", grad_clip, None)
    state = (_initial_state(h0, input, weight_hh.shape[1]),)
    weights = {"w_ih": weight_ih, "w_hh": weight_hh, "b_ih": bias_ih, "b_hh": bias_hh}
    outputs, (h,) = _sweep(f"rnn_{nonlinearity}", list(input), state, weights, options=options)
    return torch.stack(outputs), h


def _split_steps(input: Tensor, batch_sizes: Tensor | None) -> list[Tensor]:
    """Padded [T, B, F] or packed [N, F] to the per-step tensors [B_t, F]."""
    if batch_sizes is None:
        return list(input)
    return list(input.split(batch_sizes.tolist()))


def _join_steps(steps: list[Tensor], batch_sizes: Tensor | None) -> Tensor:
    return torch.stack(steps) if batch_sizes is None else torch.cat(steps)


def rnn_stack(mode: str, input: Tensor, batch_sizes: Tensor | None, hx: Tensor | None,
              cx: Tensor | None, weights: list[Tensor], *, has_bias: bool, num_layers: int,
              bidirectional: bool, proj_size: int = 0, dropout_masks: Tensor | None = None,
              grad_clip: float | None = None,
              cell_clip: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A whole torch.nn-style RNN/LSTM/GRU (``fastrnn.functional.rnn_stack``'s contract): every
    layer, both directions.

    input: padded [T, B, I] (batch_sizes None) or packed data [N, I] with batch_sizes [T].
    hx [L*D, B, P] and cx [L*D, B, H] (LSTM only), None for zeros; rows in the packed order.
    weights: torch.nn's _flat_weights order; per layer, per direction (forward, reverse):
    w_ih, w_hh, then b_ih, b_hh if has_bias, then w_hr if proj_size.
    dropout_masks: None, or [L-1, T, B, D*P] (packed: [L-1, N, D*P]) multiplied into the output
    of every layer but the last before it feeds the next.
    Returns output [T, B, D*P] (packed: [N, D*P]), h_n [L*D, B, P] and c_n [L*D, B, H] for the
    LSTM, an empty tensor of shape [0] for the others. grad_clip, cell_clip: as in the cells.
    """
    if mode not in MODES:
        raise ValueError(f"fastrnn: mode must be one of {', '.join(map(repr, MODES))}, "
                         f"got {mode!r}")
    options = _options(mode, grad_clip, cell_clip)
    if proj_size and mode != "lstm":
        raise ValueError(f"fastrnn: proj_size is only for mode 'lstm', not {mode!r}")
    if cx is not None and mode != "lstm":
        raise ValueError(f"fastrnn: cx is only for mode 'lstm', not {mode!r}")
    D = 2 if bidirectional else 1
    names = ["w_ih", "w_hh"] + ["b_ih", "b_hh"] * has_bias + ["w_hr"] * (proj_size > 0)
    if len(weights) != num_layers * D * len(names):
        raise ValueError(f"fastrnn: expected {num_layers * D * len(names)} weights "
                         f"({num_layers} layers x {D} directions x {', '.join(names)}), "
                         f"got {len(weights)}")
    H = weights[1].shape[0] // _GATES[mode]
    P = proj_size or H
    B = input.shape[1] if batch_sizes is None else int(batch_sizes[0])

    layer_input, h_n, c_n = input, [], []
    for layer in range(num_layers):
        if layer > 0 and dropout_masks is not None:
            layer_input = layer_input * dropout_masks[layer - 1]
        steps = _split_steps(layer_input, batch_sizes)
        directions = []
        for direction in range(D):
            k = layer * D + direction
            w = dict(zip(names, weights[k * len(names):(k + 1) * len(names)]))
            h0 = input.new_zeros(B, P) if hx is None else hx[k]
            state = (h0,)
            if mode == "lstm":
                state += (input.new_zeros(B, H) if cx is None else cx[k],)
            outputs, state = _sweep(mode, steps, state, w, reverse=direction == 1,
                                    options=options)
            directions.append(outputs)
            h_n.append(state[0])
            c_n.extend(state[1:])
        layer_input = _join_steps([torch.cat(per_step, dim=-1) for per_step in zip(*directions)],
                                  batch_sizes)
    return (layer_input, torch.stack(h_n),
            torch.stack(c_n) if mode == "lstm" else input.new_empty((0,)))


__all__ = ["lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell", "rnn_stack", "MODES"]
