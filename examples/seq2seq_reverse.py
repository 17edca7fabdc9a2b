"""Sequence to sequence with teacher forcing and scheduled sampling: reverse a string of digits.

An encoder (fastrnn.GRU) reads L random digits; a decoder (fastrnn.seq2seq.Decoder over a
fastrnn.GRUCell, one fused kernel call per step) starts from the encoder's final state and must
write the digits in reverse order. Trained once per schedule of the teacher-forcing probability
(Bengio et al. 2015): always the ground truth, always its own predictions, and the linear,
exponential and inverse-sigmoid decays of fastrnn.seq2seq; each run starts from the same weights
and sees the same batches. Prints the exact-match accuracy (every digit right) and the digit
accuracy of greedy decoding on held-out sequences, per schedule.

    python examples/seq2seq_reverse.py                     # length 6, 5 schedules, 1-1.5 minutes
    python examples/seq2seq_reverse.py --length 10 --steps 3000 --schedules linear,teacher

The defaults train briefly (300 steps) to stay under two minutes on 2 cores: the accuracies
compare the schedules early in training, not at convergence.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import fastrnn
from fastrnn.seq2seq import (Constant, Decoder, ExponentialDecay, InverseSigmoidDecay,
                             LinearDecay)
from progress import Progress

DIGITS = 10
START = DIGITS  # the decoder's start token: one id past the digits


def schedules(steps: int) -> dict:
    """Each schedule, its decay set so that it reaches about 1/2 near the middle of training."""
    k_sigmoid = 1.0  # solve k log k = steps / 2 for the inverse sigmoid's midpoint
    while k_sigmoid * math.log(k_sigmoid) < steps / 2:
        k_sigmoid *= 1.05
    return {
        "teacher": Constant(1.0),
        "free": Constant(0.0),
        "linear": LinearDecay(k=1.0, c=1.0 / steps, eps=0.0),
        "exponential": ExponentialDecay(0.5 ** (2.0 / steps)),
        "sigmoid": InverseSigmoidDecay(k_sigmoid),
    }


class Reverser(nn.Module):
    """Encoder GRU over embedded digits; Decoder (GRUCell) from its final state."""

    def __init__(self, embedding_size: int, hidden_size: int):
        super().__init__()
        self.embed = nn.Embedding(DIGITS, embedding_size)
        self.encoder = fastrnn.GRU(embedding_size, hidden_size)
        self.decoder = Decoder(fastrnn.GRUCell(embedding_size, hidden_size),
                               nn.Embedding(DIGITS + 1, embedding_size),
                               nn.Linear(hidden_size, DIGITS), start_token=START)

    def encode(self, digits):
        """digits [L, B] -> the decoder's initial state h [B, H]."""
        _, h_n = self.encoder(self.embed(digits))
        return h_n[0]


def batch(batch_size: int, length: int, gen: torch.Generator):
    """Random digits [L, B] and their reversal [L, B]."""
    digits = torch.randint(0, DIGITS, (length, batch_size), generator=gen)
    return digits, digits.flip(0)


def train(name: str, schedule, args, test_set) -> tuple[float, float]:
    """Train with the schedule; returns exact-match and digit accuracy on the test set."""
    torch.manual_seed(args.seed)
    model = Reverser(args.embedding_size, args.hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    sampling_gen = torch.Generator().manual_seed(args.seed + 2)
    progress = Progress(args.steps, f"{name:12s}")
    for step in range(args.steps):
        digits, reversed_digits = batch(args.batch_size, args.length, data_gen)
        p = schedule(step)
        logits = model.decoder(reversed_digits, model.encode(digits), p, generator=sampling_gen)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), reversed_digits.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        optimizer.step()
        progress.update(step + 1, p=p, loss=loss.item())
    progress.close()
    digits, reversed_digits = test_set
    with torch.no_grad():
        predicted = model.decoder.greedy(model.encode(digits), args.length)
    correct = predicted == reversed_digits
    return correct.all(0).float().mean().item(), correct.float().mean().item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=6, help="digits per sequence")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--embedding-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--clip-norm", type=float, default=1.0,
                        help="max global gradient norm (torch.nn.utils.clip_grad_norm_)")
    parser.add_argument("--schedules", default="teacher,free,linear,exponential,sigmoid",
                        help="comma-separated, from: teacher, free, linear, exponential, sigmoid")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    available = schedules(args.steps)
    names = args.schedules.split(",")
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"--schedules: unknown {', '.join(unknown)} "
                     f"(choose from {', '.join(available)})")
    if args.length < 1 or args.steps < 1:
        parser.error("--length and --steps must be at least 1")

    test_set = batch(args.test_size, args.length,
                     torch.Generator().manual_seed(args.seed + 12345))
    results = {name: train(name, available[name], args, test_set) for name in names}
    print(f"reversing {args.length} digits, {args.steps} steps of batch {args.batch_size}, "
          f"hidden {args.hidden_size}: greedy decoding of {args.test_size} held-out sequences")
    print(f"{'schedule':12s} {'exact match':>12s} {'digits':>8s}   teacher-forcing probability")
    for name in names:
        exact, per_digit = results[name]
        print(f"{name:12s} {exact:12.3f} {per_digit:8.3f}   {available[name]!r}")


if __name__ == "__main__":
    main()
