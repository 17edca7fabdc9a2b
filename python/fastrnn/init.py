"""Initialisations for recurrent modules that fight vanishing and exploding gradients.

Each function takes a recurrent module (torch.nn's or fastrnn's ``RNN``, ``LSTM``, ``GRU``,
``RNNCell``, ``LSTMCell``, ``GRUCell``), sets the parameters it names in every layer and every
direction, in place and under ``torch.no_grad()``, and returns the module. The parameter tensors
stay the same objects (an optimizer made before keeps training them); what a function does not
name keeps its value. Weights are in torch.nn's layout: ``W_hh`` is ``[G*H, H]`` with the gate
blocks stacked in torch.nn's order (LSTM i, f, g, o; GRU r, z, n; RNN one block), ``[4H, P]``
with ``proj_size = P``, and a projected LSTM also has ``W_hr`` ``[P, H]``. A module of the wrong
class raises ``TypeError``; a recurrent module for which the initialisation means nothing (IRNN
for an LSTM, a forget bias for a GRU, a bias for a module built with ``bias=False``) raises
``ValueError`` saying why.

- ``irnn_``: ReLU RNNs, ``W_hh = scale * I`` and zero biases (Le, Jaitly & Hinton 2015).
- ``orthogonal_``: every gate block of every ``W_hh`` orthogonal (and ``W_hr`` with rows
  orthonormal).
- ``forget_bias_``: LSTM forget-gate bias (Gers, Schmidhuber & Cummins 2000; Jozefowicz,
  Zaremba & Sutskever 2015).
- ``chrono_``: LSTM chrono initialisation of the forget and input biases (Tallec & Ollivier 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._args import real

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
_KIND_NAMES = {"lstm": "an LSTM", "gru": "a GRU", "rnn_tanh": "a tanh RNN",
               "rnn_relu": "a ReLU RNN"}


def _kind(fn: str, module) -> str:
    """The module's cell ("lstm", "gru", "rnn_tanh", "rnn_relu"), or TypeError naming fn."""
    if isinstance(module, nn.RNNBase) and module.mode in ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"):
        return module.mode.lower()
    if isinstance(module, nn.LSTMCell):
        return "lstm"
    if isinstance(module, nn.GRUCell):
        return "gru"
    if isinstance(module, nn.RNNCell) and module.nonlinearity in ("tanh", "relu"):
        return f"rnn_{module.nonlinearity}"
    raise TypeError(f"fastrnn.init.{fn}: expected an RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell "
                    f"module (torch.nn's or fastrnn's), got {type(module).__name__}")


def _weight_sets(module: nn.Module) -> list[dict[str, Tensor | None]]:
    """The parameters of each layer and direction: {weight_ih, weight_hh, bias_ih, bias_hh,
    weight_hr} with None for those the module lacks (biases with bias=False, W_hr without
    proj_size and in cells)."""
    if isinstance(module, nn.RNNBase):
        suffixes = ("", "_reverse") if module.bidirectional else ("",)
        return [{name: getattr(module, f"{name}_l{layer}{suffix}", None) for name in _WEIGHTS}
                for layer in range(module.num_layers) for suffix in suffixes]
    return [{name: getattr(module, name, None) for name in _WEIGHTS}]


def _lstm_biases(fn: str, module) -> list[tuple[Tensor, Tensor]]:
    """(bias_ih, bias_hh) of every layer and direction of an LSTM / LSTMCell with biases."""
    kind = _kind(fn, module)
    if kind != "lstm":
        raise ValueError(f"fastrnn.init.{fn}: needs an LSTM or LSTMCell (it sets gate biases of "
                         f"the LSTM), got {_KIND_NAMES[kind]} ({type(module).__name__})")
    if not module.bias:
        raise ValueError(f"fastrnn.init.{fn}: the {type(module).__name__} was built with "
                         "bias=False, so it has no biases to set")
    return [(w["bias_ih"], w["bias_hh"]) for w in _weight_sets(module)]


def irnn_(module: nn.Module, scale: float = 1.0) -> nn.Module:
    """IRNN initialisation (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent
    Networks of Rectified Linear Units"): ``W_hh = scale * I`` and ``bias_ih = bias_hh = 0``.

    For ReLU RNNs only: ``RNN(..., nonlinearity="relu")`` (every layer and direction) or
    ``RNNCell(..., nonlinearity="relu")``. With zero input a ReLU RNN so initialised carries a
    non-negative state unchanged (``scale=1``) or scaled by ``scale`` per step, and its gradient
    through time neither vanishes nor explodes at the start of training. ``W_ih`` keeps its
    value (the paper draws it from a small Gaussian; use ``torch.nn.init.normal_`` for that); a
    module built with ``bias=False`` has no biases to zero.

    Raises ``ValueError`` for a tanh RNN (IRNN is a ReLU network: build the module with
    ``nonlinearity="relu"``, or call ``torch.nn.init.eye_`` on ``W_hh`` yourself if you mean an
    identity-initialised tanh RNN) and for LSTM and GRU modules (an identity in each gate block
    is not IRNN; see ``orthogonal_``, ``forget_bias_`` and ``chrono_`` for gated cells).
    Returns ``module``.
    """
    kind = _kind("irnn_", module)
    if kind != "rnn_relu":
        hint = ("build it with nonlinearity='relu'" if kind == "rnn_tanh" else
                "an identity in each gate block is not IRNN; see orthogonal_, forget_bias_, "
                "chrono_")
        raise ValueError(f"fastrnn.init.irnn_: IRNN (Le et al. 2015) is a ReLU RNN with "
                         f"W_hh = scale * I, got {_KIND_NAMES[kind]} ({type(module).__name__}): "
                         f"{hint}")
    scale = real("fastrnn.init.irnn_", "scale", scale)
    with torch.no_grad():
        for weights in _weight_sets(module):
            nn.init.eye_(weights["weight_hh"]).mul_(scale)
            for name in ("bias_ih", "bias_hh"):
                if weights[name] is not None:
                    weights[name].zero_()
    return module


def orthogonal_(module: nn.Module, gain: float = 1.0,
                generator: torch.Generator | None = None) -> nn.Module:
    """Each gate block of each ``W_hh`` a random orthogonal matrix times ``gain``.

    Every layer and direction of an RNN, LSTM or GRU, or a cell. ``W_hh`` ``[G*H, H]`` holds G
    square blocks ``[H, H]`` (one per gate, torch.nn's order), and each is drawn independently
    with ``torch.nn.init.orthogonal_``: ``B B^T = B^T B = gain^2 I``. (An orthogonal ``[G*H, H]``
    as a whole would give each gate a block of norm below 1, not an isometry.)

    With ``proj_size = P < H`` the recurrence goes ``h [P] -> W_hh -> gates [4H] ... -> W_hr
    [P, H] -> h``: each block of ``W_hh`` is ``[H, P]`` and is made semi-orthogonal with
    orthonormal columns times gain (``B^T B = gain^2 I_P``: it preserves the norm of h), and
    ``W_hr`` semi-orthogonal with orthonormal rows (``W_hr W_hr^T = I_P``, no gain), so the
    product ``B W_hr`` that carries the state from step to step has P singular values equal to
    ``gain`` and the rest zero.

    ``W_ih`` and the biases keep their values: initialise them as you wish (for instance
    ``torch.nn.init.xavier_uniform_`` on each gate block of ``W_ih``). ``generator`` draws the
    random matrices, for reproducible initialisation. Returns ``module``.
    """
    _kind("orthogonal_", module)  # TypeError for anything but a recurrent module
    gain = real("fastrnn.init.orthogonal_", "gain", gain)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"fastrnn.init.orthogonal_: generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    H = module.hidden_size
    with torch.no_grad():
        for weights in _weight_sets(module):
            for block in weights["weight_hh"].split(H):
                nn.init.orthogonal_(block, gain=gain, generator=generator)
            if weights["weight_hr"] is not None:
                nn.init.orthogonal_(weights["weight_hr"], generator=generator)
    return module


def forget_bias_(module: nn.Module, value: float = 1.0) -> nn.Module:
    """Set an LSTM's forget-gate bias: ``bias_ih[f] = value`` and ``bias_hh[f] = 0``.

    The forget gate is ``sigmoid(W_if x + b_if + W_hf h + b_hf)``; torch.nn's LSTM has two
    biases that add, so their forget entries (rows ``H:2H``, gate order i, f, g, o) are set to
    sum to ``value``: ``value`` in ``bias_ih`` and 0 in ``bias_hh``. A positive value (1 is the
    usual choice: Gers et al. 2000, Jozefowicz et al. 2015) makes the cell keep its state at the
    start of training. Every layer and direction of an ``LSTM`` (``proj_size`` included: the
    biases are ``[4H]`` either way), or an ``LSTMCell``. The other gates' biases keep their
    values.

    Raises ``ValueError`` for a module that is not an LSTM or was built with ``bias=False``.
    Returns ``module``.
    """
    biases = _lstm_biases("forget_bias_", module)
    value = real("fastrnn.init.forget_bias_", "value", value)
    H = module.hidden_size
    with torch.no_grad():
        for bias_ih, bias_hh in biases:
            bias_ih[H:2 * H].fill_(value)
            bias_hh[H:2 * H].zero_()
    return module


def chrono_(module: nn.Module, t_max: float,
            generator: torch.Generator | None = None) -> nn.Module:
    """Chrono initialisation of an LSTM (Tallec & Ollivier 2018, "Can recurrent neural networks
    warp time?"): ``b_f ~ log(U([1, t_max - 1]))`` and ``b_i = -b_f``, one draw per unit.

    ``t_max`` is the longest time dependency expected in the data, in steps (at least 2). A unit
    with forget bias ``b_f`` and input bias ``-b_f`` starts as a leaky integrator of time
    constant about ``1 + exp(b_f)``, so the units' memories span 2 to ``t_max`` steps. torch.nn's
    two biases add: the drawn values go in ``bias_ih`` (rows ``H:2H`` for f, ``0:H`` for i) and
    the same rows of ``bias_hh`` are zeroed. The g and o biases keep their values. Every layer
    and direction of an ``LSTM`` (``proj_size`` included), each drawn independently, or an
    ``LSTMCell``; ``generator`` draws the uniform samples, for reproducible initialisation.

    Only the LSTM rule is implemented: a GRU raises ``ValueError`` (its analogue would put the
    draw on the bias of the update gate z, as torch.nn's GRU keeps ``z * h``). Raises ``ValueError`` for a module that is not an LSTM, one
    built with ``bias=False``, or ``t_max < 2``. Returns ``module``.
    """
    biases = _lstm_biases("chrono_", module)
    t_max = real("fastrnn.init.chrono_", "t_max", t_max)
    if t_max < 2:
        raise ValueError(f"fastrnn.init.chrono_: t_max must be at least 2 (b_f is drawn as "
                         f"log(U(1, t_max - 1))), got {t_max}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"fastrnn.init.chrono_: generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    H = module.hidden_size
    with torch.no_grad():
        for bias_ih, bias_hh in biases:
            b_f = torch.empty_like(bias_ih[:H]).uniform_(1, t_max - 1, generator=generator).log_()
            bias_ih[H:2 * H].copy_(b_f)
            bias_ih[:H].copy_(-b_f)
            bias_hh[:2 * H].zero_()
    return module


__all__ = ["irnn_", "orthogonal_", "forget_bias_", "chrono_"]
