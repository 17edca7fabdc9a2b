"""fastrnn.seq2seq: the schedules against the paper's formulas, the Decoder against hand-written
teacher-forced, free-running and mixed loops (exactly), gradients, bad arguments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fastrnn
from fastrnn.seq2seq import (Constant, Decoder, ExponentialDecay, InverseSigmoidDecay,
                             LinearDecay)

V, E, H, P, T, B = 7, 5, 8, 3, 6, 4
START = V - 1
STEPS = [0, 1, 2, 10, 57, 500, 10_000]


# ------------------------------------------------------------------------------ schedules

@pytest.mark.parametrize("step", STEPS)
def test_schedules_equal_published_formulas(step):
    """Bengio et al. 2015, section 2.4, written out here as the paper gives them."""
    assert Constant(0.3)(step) == 0.3
    assert LinearDecay(k=1.0, c=0.002, eps=0.1)(step) == max(0.1, 1.0 - 0.002 * step)
    assert LinearDecay(k=0.9, c=0.0)(step) == 0.9
    assert ExponentialDecay(0.999)(step) == 0.999 ** step
    assert InverseSigmoidDecay(100)(step) == 100 / (100 + math.exp(step / 100))
    assert InverseSigmoidDecay(1.5)(step // 100) == 1.5 / (1.5 + math.exp(step // 100 / 1.5))


def test_schedules_decay_from_one():
    assert LinearDecay(c=0.01)(0) == 1.0 and LinearDecay(c=0.01)(100) == 0.0
    assert LinearDecay(c=0.01, eps=0.25)(1000) == 0.25
    assert ExponentialDecay(0.5)(0) == 1.0 and ExponentialDecay(0.5)(3) == 0.125
    schedule = InverseSigmoidDecay(10)
    values = [schedule(i) for i in range(0, 200, 10)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert abs(schedule(23) - 0.5) < abs(schedule(22) - 0.5)  # 1/2 at i = k log k = 23.03


def test_inverse_sigmoid_past_float_overflow():
    """exp(i / k) overflows a float past i / k = 709.78: the value is k exp(-i / k) there."""
    schedule = InverseSigmoidDecay(2.0)
    assert schedule(1400) == 2.0 / (2.0 + math.exp(700))
    assert schedule(1430) == math.exp(math.log(2.0) - 715)
    assert 0.0 < schedule(1430) < schedule(1400)


@pytest.mark.parametrize("make, error, match", [
    (lambda: Constant(1.5), ValueError, r"p must be a probability in \[0, 1\]"),
    (lambda: Constant("1"), TypeError, "p must be a real number"),
    (lambda: LinearDecay(k=1.2), ValueError, "0 <= eps <= k <= 1"),
    (lambda: LinearDecay(eps=0.5, k=0.4), ValueError, "0 <= eps <= k <= 1"),
    (lambda: LinearDecay(c=-1), ValueError, "slope c must be >= 0"),
    (lambda: ExponentialDecay(1.0), ValueError, r"k must be in \(0, 1\)"),
    (lambda: ExponentialDecay(0), ValueError, r"k must be in \(0, 1\)"),
    (lambda: InverseSigmoidDecay(0.5), ValueError, "k must be >= 1"),
    (lambda: InverseSigmoidDecay(float("inf")), ValueError, "k must be finite"),
    (lambda: Constant(0.5)(-1), ValueError, "step must be at least 0"),
    (lambda: LinearDecay()(1.5), TypeError, "step must be an int"),
    (lambda: ExponentialDecay(0.5)(True), TypeError, "step must be an int"),
])
def test_schedule_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_schedule_repr():
    assert repr(LinearDecay(1.0, 0.5, 0.1)) == "LinearDecay(k=1.0, c=0.5, eps=0.1)"


# -------------------------------------------------------------------------------- decoder

CELLS = {
    "fastrnn.GRUCell": lambda: fastrnn.GRUCell(E, H),
    "fastrnn.LSTMCell": lambda: fastrnn.LSTMCell(E, H),
    "fastrnn.RNNCell-relu": lambda: fastrnn.RNNCell(E, H, nonlinearity="relu"),
    "torch.nn.LSTMCell": lambda: nn.LSTMCell(E, H),
    "fastrnn.LSTM": lambda: fastrnn.LSTM(E, H),
    "fastrnn.GRU-batch_first": lambda: fastrnn.GRU(E, H, batch_first=True),
    "fastrnn.LSTM-proj": lambda: fastrnn.LSTM(E, H, proj_size=P),
    "torch.nn.RNN": lambda: nn.RNN(E, H),
}


def make_decoder(name: str, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    cell = CELLS[name]()
    out = getattr(cell, "proj_size", 0) or H
    return Decoder(cell, nn.Embedding(V, E), nn.Linear(out, V), start_token=START)


def initial_state(decoder: Decoder, seed: int = 1, requires_grad: bool = False):
    gen = torch.Generator().manual_seed(seed)
    cell = decoder.cell
    lead = (1,) if isinstance(cell, nn.RNNBase) else ()
    h_size = getattr(cell, "proj_size", 0) or H
    h = torch.randn(*lead, B, h_size, generator=gen).requires_grad_(requires_grad)
    if isinstance(cell, (nn.LSTM, nn.LSTMCell)):
        return h, torch.randn(*lead, B, H, generator=gen).requires_grad_(requires_grad)
    return h


def targets(seed: int = 2) -> torch.Tensor:
    return torch.randint(0, V - 1, (T, B), generator=torch.Generator().manual_seed(seed))


def hand_step(decoder: Decoder, tokens, state):
    """One step written out: embedding, the cell (or a one-step module call), projection."""
    cell, x = decoder.cell, decoder.embedding(tokens)
    if isinstance(cell, nn.RNNBase):
        if cell.batch_first:
            output, state = cell(x[:, None], state)
            output = output[:, 0]
        else:
            output, state = cell(x[None], state)
            output = output[0]
    else:
        state = cell(x, state)
        output = state[0] if isinstance(cell, nn.LSTMCell) else state
    return decoder.projection(output), state


def hand_loop(decoder, target, state, choose):
    """The decoding loop written out: choose(t, truth, logits) picks the next input."""
    tokens = torch.full((B,), START)
    logits = []
    for t in range(T):
        step_logits, state = hand_step(decoder, tokens, state)
        logits.append(step_logits)
        tokens = choose(t, target[t], step_logits)
    return torch.stack(logits)


@pytest.mark.parametrize("name", CELLS)
def test_teacher_forcing_equals_hand_written_loop(name):
    decoder, target = make_decoder(name), targets()
    logits = decoder(target, initial_state(decoder), 1.0)
    expected = hand_loop(decoder, target, initial_state(decoder), lambda t, truth, _: truth)
    assert logits.shape == (T, B, V)
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("name", CELLS)
def test_free_running_equals_hand_written_loop_and_greedy(name):
    decoder, target = make_decoder(name), targets()
    logits = decoder(target, initial_state(decoder), 0.0)
    expected = hand_loop(decoder, target, initial_state(decoder),
                         lambda t, truth, step_logits: step_logits.argmax(-1))
    assert torch.equal(logits, expected)
    tokens = decoder.greedy(initial_state(decoder), T)
    assert tokens.shape == (T, B) and tokens.dtype == torch.int64
    assert torch.equal(tokens, logits.argmax(-1))
    # differs from teacher forcing, or the tests above could not tell the two apart
    assert not torch.equal(logits, decoder(target, initial_state(decoder), 1.0))


@pytest.mark.parametrize("name", ["fastrnn.GRUCell", "fastrnn.LSTM"])
def test_scheduled_sampling_mixes_per_row_with_the_generator(name):
    """At 0 < p < 1 each row's next input is its truth where rand < p, else its argmax; the
    draws come from the generator, so the same seed gives the same logits."""
    decoder, target, p = make_decoder(name), targets(), 0.5
    gen = torch.Generator().manual_seed(7)
    logits = decoder(target, initial_state(decoder), p, generator=gen)
    draws = torch.Generator().manual_seed(7)
    picks = []

    def choose(t, truth, step_logits):
        use_truth = torch.rand(B, generator=draws) < p
        picks.append(use_truth)
        return torch.where(use_truth, truth, step_logits.argmax(-1))

    expected = hand_loop(decoder, target, initial_state(decoder), choose)
    assert torch.equal(logits, expected)
    picks = torch.stack(picks)
    assert picks.any() and not picks.all()  # both kinds of input occurred
    again = decoder(target, initial_state(decoder), p, generator=torch.Generator().manual_seed(7))
    assert torch.equal(again, logits)


@pytest.mark.parametrize("name", ["fastrnn.LSTMCell", "fastrnn.GRU-batch_first"])
@pytest.mark.parametrize("p", [1.0, 0.5, 0.0])
def test_gradients_flow_to_every_parameter_and_the_state(name, p):
    decoder, target = make_decoder(name), targets()
    state = initial_state(decoder, requires_grad=True)
    logits = decoder(target, state, p, generator=torch.Generator().manual_seed(0))
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    loss.backward()
    for param_name, param in decoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name
    for h in (state if isinstance(state, tuple) else (state,)):
        assert h.grad is not None and h.grad.abs().sum() > 0


def test_greedy_start_token_and_no_grad():
    decoder = make_decoder("fastrnn.GRUCell")
    state = initial_state(decoder, requires_grad=True)
    tokens = decoder.greedy(state, 3, start_token=0)
    assert not tokens.requires_grad
    expected, h, token = [], state, torch.zeros(B, dtype=torch.int64)
    with torch.no_grad():
        for _ in range(3):
            step_logits, h = hand_step(decoder, token, h)
            token = step_logits.argmax(-1)
            expected.append(token)
    assert torch.equal(tokens, torch.stack(expected))


@pytest.mark.parametrize("call, error, match", [
    (lambda d, s: d(targets().float(), s, 1.0), TypeError, "integer token ids"),
    (lambda d, s: d(targets()[0], s, 1.0), ValueError, r"targets must be \[T, B\]"),
    (lambda d, s: d(targets()[:0], s, 1.0), ValueError, r"T >= 1"),
    (lambda d, s: d(targets().tolist(), s, 1.0), TypeError, "targets must be a Tensor"),
    (lambda d, s: d(targets(), s, 1.5), ValueError, r"teacher_forcing_prob must be in \[0, 1\]"),
    (lambda d, s: d(targets(), s, "1"), TypeError, "teacher_forcing_prob must be a real number"),
    (lambda d, s: d(targets(), s, 0.5, generator=3), TypeError, "torch.Generator"),
    (lambda d, s: d.greedy(s, 0), ValueError, "max_len must be at least 1"),
    (lambda d, s: d.greedy(None, 3), ValueError, "needs the initial state"),
    (lambda d, s: d.greedy(s[0], 3), ValueError, "expected a batched state h of 2"),
    (lambda d, s: d.greedy(s, 3, start_token=V), ValueError, "outside the embedding's 7 ids"),
], ids=["float-targets", "1d-targets", "empty-targets", "list-targets", "p-above-1", "p-str",
        "generator-int", "max_len-0", "greedy-no-state", "greedy-unbatched", "start-token"])
def test_decoder_bad_arguments(call, error, match):
    decoder = make_decoder("fastrnn.GRUCell")
    with pytest.raises(error, match=match):
        call(decoder, initial_state(decoder))


@pytest.mark.parametrize("make, error, match", [
    (lambda: Decoder(fastrnn.LSTM(E, H, num_layers=2), nn.Embedding(V, E), nn.Linear(H, V), 0),
     ValueError, "one layer and one direction"),
    (lambda: Decoder(nn.GRU(E, H, bidirectional=True), nn.Embedding(V, E), nn.Linear(H, V), 0),
     ValueError, "one layer and one direction"),
    (lambda: Decoder(nn.Linear(E, H), nn.Embedding(V, E), nn.Linear(H, V), 0),
     TypeError, "cell must be an RNNCell"),
    (lambda: Decoder(fastrnn.GRUCell(E, H), nn.Embedding(V, E + 1), nn.Linear(H, V), 0),
     ValueError, "embedding gives vectors of 6, the cell's input_size is 5"),
    (lambda: Decoder(fastrnn.LSTM(E, H, proj_size=P), nn.Embedding(V, E), nn.Linear(H, V), 0),
     ValueError, "projection takes 8 features, the cell emits 3"),
    (lambda: Decoder(fastrnn.GRUCell(E, H), torch.zeros(V, E), nn.Linear(H, V), 0),
     TypeError, "embedding must be an nn.Module"),
    (lambda: Decoder(fastrnn.GRUCell(E, H), nn.Embedding(V, E), nn.Linear(H, V), V),
     ValueError, "start_token 7 is outside"),
    (lambda: Decoder(fastrnn.GRUCell(E, H), nn.Embedding(V, E), nn.Linear(H, V), -1),
     ValueError, "start_token must be at least 0"),
    (lambda: Decoder(fastrnn.GRUCell(E, H), nn.Embedding(V, E), nn.Linear(H, V), 1.0),
     TypeError, "start_token must be an int"),
], ids=["2-layers", "bidirectional", "Linear-cell", "embedding-size", "projection-size",
        "embedding-tensor", "start-too-big", "start-negative", "start-float"])
def test_decoder_construction_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
