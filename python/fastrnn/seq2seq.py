"""Teacher forcing and scheduled sampling for recurrent decoders (Bengio, Vinyals, Jaitly &
Shazeer 2015, "Scheduled Sampling for Sequence Prediction with Recurrent Neural Networks").

A decoder trained with teacher forcing sees the ground-truth previous token at every step; at
inference it sees its own predictions, which it never saw in training. Scheduled sampling feeds,
at each step and for each sequence, the ground truth with probability ``eps_i`` and the model's
own prediction otherwise, with ``eps_i`` decaying over the training steps ``i`` from 1 (teacher
forcing) towards 0 (free running). The schedules here are the paper's (section 2.4):

- ``Constant(p)``: ``eps_i = p``.
- ``LinearDecay(k, c, eps)``: ``eps_i = max(eps, k - c * i)``.
- ``ExponentialDecay(k)``: ``eps_i = k ** i``.
- ``InverseSigmoidDecay(k)``: ``eps_i = k / (k + exp(i / k))``.

Each is a callable of the training step ``i`` (an int >= 0) returning ``eps_i``, to pass to
``Decoder.forward`` as ``teacher_forcing_prob``::

    decoder = Decoder(fastrnn.GRUCell(32, 128), nn.Embedding(11, 32), nn.Linear(128, 11),
                      start_token=10)
    schedule = InverseSigmoidDecay(k=100)
    for step, (targets, state) in enumerate(batches):
        logits = decoder(targets, state, schedule(step), generator=gen)  # [T, B, V]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._args import index, real


class Schedule:
    """A scheduled-sampling schedule: ``schedule(i)`` is the probability ``eps_i`` of feeding
    the ground truth at training step ``i`` (an int >= 0). Subclasses define ``_value``."""

    def __call__(self, step: int) -> float:
        """``eps_i`` at training step ``step``, a probability in [0, 1]."""
        return self._value(index(type(self).__name__, "step", step, 0))

    def _value(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``eps_i = p`` at every step: ``Constant(1.0)`` is teacher forcing, ``Constant(0.0)``
    always feeds the model's own predictions."""

    def __init__(self, p: float):
        self.p = real("Constant", "p", p)
        if not 0 <= self.p <= 1:
            raise ValueError(f"Constant: p must be a probability in [0, 1], got {self.p}")

    def _value(self, step: int) -> float:
        return self.p


class LinearDecay(Schedule):
    """Linear decay (Bengio et al. 2015): ``eps_i = max(eps, k - c * i)``.

    ``k`` is the offset (the probability at step 0), ``c`` the slope per step and ``eps`` the
    floor, the least teacher forcing kept; ``0 <= eps <= k <= 1`` and ``c >= 0``.
    """

    def __init__(self, k: float = 1.0, c: float = 1e-3, eps: float = 0.0):
        self.k = real("LinearDecay", "k", k)
        self.c = real("LinearDecay", "c", c)
        self.eps = real("LinearDecay", "eps", eps)
        if not 0 <= self.eps <= self.k <= 1:
            raise ValueError(f"LinearDecay: needs 0 <= eps <= k <= 1, got eps={self.eps}, "
                             f"k={self.k}")
        if self.c < 0:
            raise ValueError(f"LinearDecay: the slope c must be >= 0, got {self.c}")

    def _value(self, step: int) -> float:
        return max(self.eps, self.k - self.c * step)


class ExponentialDecay(Schedule):
    """Exponential decay (Bengio et al. 2015): ``eps_i = k ** i``, with ``0 < k < 1``."""

    def __init__(self, k: float):
        self.k = real("ExponentialDecay", "k", k)
        if not 0 < self.k < 1:
            raise ValueError(f"ExponentialDecay: k must be in (0, 1), got {self.k}")

    def _value(self, step: int) -> float:
        return self.k ** step


class InverseSigmoidDecay(Schedule):
    """Inverse sigmoid decay (Bengio et al. 2015): ``eps_i = k / (k + exp(i / k))``, with
    ``k >= 1``; larger k decays later (eps_i is 1/2 at ``i = k log k``).

    Where ``exp(i / k)`` overflows a float the value is ``k * exp(-i / k)``, which the formula
    equals to within rounding there.
    """

    def __init__(self, k: float):
        self.k = real("InverseSigmoidDecay", "k", k)
        if self.k < 1:
            raise ValueError(f"InverseSigmoidDecay: k must be >= 1, got {self.k}")

    def _value(self, step: int) -> float:
        k = self.k
        try:
            return k / (k + math.exp(step / k))
        except OverflowError:
            return math.exp(math.log(k) - step / k)


def _output_size(cell: nn.Module) -> int:
    """The size of what the cell emits per step (hidden_size, or proj_size for a projected LSTM)."""
    return getattr(cell, "proj_size", 0) or cell.hidden_size


class Decoder(nn.Module):
    """A recurrent decoder: embedding -> cell -> projection, one step per output token.

    ``cell`` is an ``RNNCell``, ``LSTMCell`` or ``GRUCell`` (fastrnn's, whose one-step calls run
    the fused kernels, or torch.nn's) or a one-layer, one-direction ``RNN``, ``LSTM`` or ``GRU``
    module (called on one time step at a time). ``embedding`` maps token ids ``[B]`` to
    ``[B, cell.input_size]`` (an ``nn.Embedding``), ``projection`` maps the cell's output (``h``,
    ``[B, hidden_size]``, or ``[B, proj_size]``) to logits ``[B, V]`` (an ``nn.Linear``).
    ``start_token`` is the id fed at the first step.

    States are the cell's own: ``h`` ``[B, H]`` or ``(h, c)`` for a cell, ``[1, B, H]`` or
    ``(h, c)`` of that shape for a module (an encoder's final state passes straight in); None
    means zeros.
    """

    def __init__(self, cell: nn.Module, embedding: nn.Module, projection: nn.Module,
                 start_token: int):
        super().__init__()
        if isinstance(cell, nn.RNNBase):
            if cell.num_layers != 1 or cell.bidirectional:
                raise ValueError(
                    f"Decoder: a {type(cell).__name__} module must have one layer and one "
                    f"direction to step as a decoder, got num_layers={cell.num_layers}, "
                    f"bidirectional={cell.bidirectional} (stack cells for a deeper decoder)")
        elif not isinstance(cell, nn.RNNCellBase):
            raise TypeError(f"Decoder: cell must be an RNNCell, LSTMCell, GRUCell or a one-layer "
                            f"RNN, LSTM or GRU module, got {type(cell).__name__}")
        for name, module in (("embedding", embedding), ("projection", projection)):
            if not isinstance(module, nn.Module):
                raise TypeError(f"Decoder: {name} must be an nn.Module, "
                                f"got {type(module).__name__}")
        dim = getattr(embedding, "embedding_dim", None)
        if dim is not None and dim != cell.input_size:
            raise ValueError(f"Decoder: the embedding gives vectors of {dim}, the cell's "
                             f"input_size is {cell.input_size}")
        features = getattr(projection, "in_features", None)
        if features is not None and features != _output_size(cell):
            raise ValueError(f"Decoder: the projection takes {features} features, the cell "
                             f"emits {_output_size(cell)}")
        self.cell = cell
        self.embedding = embedding
        self.projection = projection
        self.start_token = self._check_token(start_token)
        self._is_lstm = isinstance(cell, (nn.LSTM, nn.LSTMCell))
        self._time_dim = (1 if cell.batch_first else 0) if isinstance(cell, nn.RNNBase) else None

    def _check_token(self, token) -> int:
        token = index("Decoder", "start_token", token, 0)
        vocabulary = getattr(self.embedding, "num_embeddings", None)
        if vocabulary is not None and token >= vocabulary:
            raise ValueError(f"Decoder: start_token {token} is outside the embedding's "
                             f"{vocabulary} ids")
        return token

    def step(self, tokens: Tensor, state):
        """One decoder step: token ids ``[B]`` and the state to logits ``[B, V]`` and the
        next state (one call of the cell)."""
        x = self.embedding(tokens)
        if self._time_dim is None:
            state = self.cell(x, state)
            output = state[0] if self._is_lstm else state
        else:
            output, state = self.cell(x.unsqueeze(self._time_dim), state)
            output = output.squeeze(self._time_dim)
        return self.projection(output), state

    def forward(self, targets: Tensor, state, teacher_forcing_prob: float,
                generator: torch.Generator | None = None) -> Tensor:
        """Training pass over ``targets`` ``[T, B]`` (integer ids); returns logits ``[T, B, V]``.

        Step 0 reads ``start_token``; step ``t > 0`` reads, for each sequence (batch row) on its
        own, the ground truth ``targets[t - 1]`` with probability ``teacher_forcing_prob``, else
        the model's own greedy prediction at step ``t - 1`` (the argmax of its logits, which
        carries no gradient). The choices are drawn with ``torch.rand`` from ``generator`` (on
        the targets' device; None: the global generator) only when ``0 < p < 1``: ``p = 1`` is
        exact teacher forcing and ``p = 0`` exact free running, and neither draws anything.
        ``teacher_forcing_prob`` is typically ``schedule(step)`` for a ``Schedule``.
        """
        if not isinstance(targets, Tensor):
            raise TypeError(f"Decoder: targets must be a Tensor, got {type(targets).__name__}")
        if targets.dim() != 2 or targets.size(0) == 0:
            raise ValueError(f"Decoder: targets must be [T, B] with T >= 1, "
                             f"got shape {tuple(targets.shape)}")
        if targets.dtype.is_floating_point or targets.dtype.is_complex or \
                targets.dtype == torch.bool:
            raise TypeError(f"Decoder: targets must hold integer token ids, got {targets.dtype}")
        p = real("Decoder", "teacher_forcing_prob", teacher_forcing_prob)
        if not 0 <= p <= 1:
            raise ValueError(f"Decoder: teacher_forcing_prob must be in [0, 1], got {p}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Decoder: generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")

        tokens = targets.new_full((targets.size(1),), self.start_token)
        logits = []
        for t in range(targets.size(0)):
            step_logits, state = self.step(tokens, state)
            logits.append(step_logits)
            truth = targets[t]
            if p == 1:
                tokens = truth
                continue
            predicted = step_logits.detach().argmax(-1).to(truth.dtype)
            if p == 0:
                tokens = predicted
                continue
            use_truth = torch.rand(truth.shape, generator=generator, device=truth.device) < p
            tokens = torch.where(use_truth, truth, predicted)
        return torch.stack(logits)

    @torch.no_grad()
    def greedy(self, state, max_len: int, start_token: int | None = None) -> Tensor:
        """Greedy decoding from ``state`` for ``max_len`` steps (no gradient): each step reads
        the previous step's argmax, the first ``start_token`` (default: the decoder's).
        Returns the token ids ``[max_len, B]`` (int64), B taken from the state, which must be
        batched (``h`` ``[B, H]`` for a cell, ``[1, B, H]`` for a module, or ``(h, c)``). There
        is no end token: every sequence runs ``max_len`` steps. The same tokens as
        ``forward(targets, state, 0.0).argmax(-1)`` for targets of length ``max_len``.
        """
        max_len = index("Decoder.greedy", "max_len", max_len, 1)
        start = self.start_token if start_token is None else self._check_token(start_token)
        h = state[0] if isinstance(state, (tuple, list)) else state
        if not isinstance(h, Tensor):
            raise ValueError("Decoder.greedy: needs the initial state (a tensor, or (h, c)), "
                             f"to take the batch size from; got {type(h).__name__}")
        batched_dim = 2 if self._time_dim is None else 3
        if h.dim() != batched_dim:
            raise ValueError(f"Decoder.greedy: expected a batched state h of {batched_dim} "
                             f"dimensions, got shape {tuple(h.shape)}")
        tokens = torch.full((h.size(-2),), start, dtype=torch.int64, device=h.device)
        out = []
        for _ in range(max_len):
            logits, state = self.step(tokens, state)
            tokens = logits.argmax(-1)
            out.append(tokens)
        return torch.stack(out)


__all__ = ["Schedule", "Constant", "LinearDecay", "ExponentialDecay", "InverseSigmoidDecay",
           "Decoder"]
