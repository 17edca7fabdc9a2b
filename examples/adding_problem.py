"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015) on fastrnn's modules.

Each input is a sequence of T pairs: a random number in [0, 1) and a marker, 1 at two steps (one
in each half of the sequence) and 0 elsewhere; the target is the sum of the two marked numbers,
read off the last hidden state by a linear layer. Predicting 1 whatever the input scores an MSE
of 1/6 = 0.167 (the variance of the sum): a model beats it only by carrying the marked numbers
across up to T steps, which is where vanishing and exploding gradients bite.

Trains a tanh RNN, an IRNN (a ReLU RNN with fastrnn.init.irnn_: W_hh = I, zero biases), an LSTM
(with fastrnn.init.forget_bias_) and a GRU, each without gradient clipping, with
torch.nn.utils.clip_grad_norm_ at --grad-clip (the global norm of all the gradients, after
backward) and, given --in-kernel-clip G, with the modules' in-kernel grad_clip=G (every gate
pre-activation's gradient clamped to [-G, G] at every step of backward), on the same batches,
and prints the MSE of each on held-out sequences beside the baseline; --plot draws the loss
curves (needs matplotlib).
The defaults (T = 50, 700 steps) run in about a minute on 2 cores, where the GRU solves the task
and the others are still at the baseline; longer sequences (Le et al. use T = 150 to 750) need
thousands of steps for any of them.

    python examples/adding_problem.py                           # T=50, 8 runs, about a minute
    python examples/adding_problem.py --seq-len 150 --steps 5000 --plot adding.png
    python examples/adding_problem.py --models lstm,irnn --grad-clip 0   # no clipped runs
    python examples/adding_problem.py --in-kernel-clip 0.01    # adds runs with grad_clip=0.01
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

import fastrnn
from progress import Progress

BASELINE = 1 / 6  # MSE of predicting 1: the variance of the sum of two U(0, 1) numbers
MODELS = {"rnn": "RNN tanh", "irnn": "IRNN", "lstm": "LSTM", "gru": "GRU"}


def adding_batch(batch_size: int, seq_len: int, gen: torch.Generator):
    """Inputs [T, B, 2] (number, marker) and targets [B]: the sum of the two marked numbers."""
    numbers = torch.rand(seq_len, batch_size, generator=gen)
    half = seq_len // 2
    first = torch.randint(0, half, (batch_size,), generator=gen)
    second = torch.randint(half, seq_len, (batch_size,), generator=gen)
    markers = torch.zeros(seq_len, batch_size)
    rows = torch.arange(batch_size)
    markers[first, rows] = 1
    markers[second, rows] = 1
    targets = numbers[first, rows] + numbers[second, rows]
    return torch.stack([numbers, markers], dim=-1), targets


class Regressor(nn.Module):
    """A one-layer recurrent module and a linear read-out of its last hidden state.

    ``kind`` is a key of MODELS; ``options`` go to the fastrnn module (``grad_clip``,
    ``record_grad_norms``)."""

    def __init__(self, kind: str, hidden_size: int, **options):
        super().__init__()
        if kind == "rnn":
            self.rnn = fastrnn.RNN(2, hidden_size, nonlinearity="tanh", **options)
        elif kind == "irnn":
            self.rnn = fastrnn.RNN(2, hidden_size, nonlinearity="relu", **options)
            fastrnn.init.irnn_(self.rnn)
            nn.init.normal_(self.rnn.weight_ih_l0, std=1e-3)  # small input weights, as Le et al.
        elif kind == "lstm":
            self.rnn = fastrnn.LSTM(2, hidden_size, **options)
            fastrnn.init.forget_bias_(self.rnn, 1.0)
        elif kind == "gru":
            self.rnn = fastrnn.GRU(2, hidden_size, **options)
        else:
            raise ValueError(f"unknown model {kind!r} (choose from {', '.join(MODELS)})")
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x):
        """x [T, B, 2] -> predictions [B]."""
        _, h_n = self.rnn(x)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n
        return self.head(h_n[-1]).squeeze(-1)


def model_kinds(parser: argparse.ArgumentParser, models: str) -> list[str]:
    """The keys of MODELS in the comma-separated ``models`` (--models); an unknown one is a usage
    error."""
    kinds = models.split(",")
    unknown = [k for k in kinds if k not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    return kinds


def clippings(args) -> list[tuple[str, float]]:
    """The runs' clipping, per model: (method, value) with method "none", "norm"
    (clip_grad_norm_) or "kernel" (the module's in-kernel grad_clip)."""
    runs = [("none", 0.0)]
    if args.grad_clip:
        runs.append(("norm", args.grad_clip))
    if args.in_kernel_clip:
        runs.append(("kernel", args.in_kernel_clip))
    return runs


def clipping_name(method: str, value: float) -> str:
    return {"none": "no clipping", "norm": f"clip_grad_norm_ {value:g}",
            "kernel": f"grad_clip {value:g}"}[method]


def train(kind: str, clipping: tuple[str, float], args, test_set) -> tuple[float, list[float]]:
    """Train one model with one of clippings(args); returns its test MSE and its training
    losses. Every run sees the same initial weights per kind and the same batches."""
    method, clip = clipping
    torch.manual_seed(args.seed)
    model = Regressor(kind, args.hidden_size, grad_clip=clip if method == "kernel" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed + 1)
    label = f"{MODELS[kind]}, {clipping_name(method, clip)}"
    progress, losses = Progress(args.steps, f"{label:30s}"), []
    for step in range(1, args.steps + 1):
        x, y = adding_batch(args.batch_size, args.seq_len, gen)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if method == "norm":
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
        progress.update(step, loss=losses[-1])
        if not math.isfinite(losses[-1]):
            break  # diverged: the weights are no longer numbers
    progress.close()
    with torch.no_grad():
        mse = nn.functional.mse_loss(model(test_set[0]), test_set[1]).item()
    return mse, losses


def plot(curves: dict[str, list[float]], path: str, seq_len: int) -> None:
    """Loss curves (a moving average of 20 steps), one per run, and the baseline."""
    try:
        import matplotlib
    except ImportError:
        print("--plot: matplotlib is not installed, no plot written")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, losses in curves.items():
        window = min(20, len(losses))
        smooth = torch.tensor(losses).unfold(0, window, 1).mean(1)
        ax.plot(range(window, len(losses) + 1), smooth,
                linestyle="-" if "no clipping" in label else "--" if "norm" in label else ":",
                label=label)
    ax.axhline(BASELINE, color="gray", linewidth=1, label="predict 1 (0.167)")
    ax.set(xlabel="training step", ylabel="MSE (moving average of 20 steps)", yscale="log",
           title=f"Adding problem, T = {seq_len}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written to {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--grad-clip", type=float, default=1.0,
                        help="max global gradient norm (torch.nn.utils.clip_grad_norm_) of the "
                             "clipped runs; 0: only unclipped runs")
    parser.add_argument("--in-kernel-clip", type=float, default=0.0, metavar="G",
                        help="adds runs with the modules' in-kernel grad_clip=G: each gate "
                             "pre-activation's gradient clamped to [-G, G] at every step of "
                             "backward (0: no such runs)")
    parser.add_argument("--models", default="rnn,irnn,lstm,gru",
                        help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--plot", metavar="PATH", help="write the loss curves (matplotlib)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kinds = model_kinds(parser, args.models)
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2 (one marker in each half)")
    if args.grad_clip < 0:
        parser.error("--grad-clip must be >= 0")
    if args.in_kernel_clip < 0:
        parser.error("--in-kernel-clip must be >= 0")

    test_set = adding_batch(args.test_size, args.seq_len,
                            torch.Generator().manual_seed(args.seed + 12345))
    measured = nn.functional.mse_loss(torch.ones(args.test_size), test_set[1]).item()
    runs = clippings(args)
    results, curves = {}, {}
    for kind in kinds:
        for clipping in runs:
            mse, losses = train(kind, clipping, args, test_set)
            results[kind, clipping] = mse
            curves[f"{MODELS[kind]}, {clipping_name(*clipping)}"] = losses

    print(f"adding problem, T = {args.seq_len}, {args.steps} steps of batch {args.batch_size}, "
          f"hidden {args.hidden_size}: test MSE on {args.test_size} sequences")
    print(f"baseline (predict 1): 0.167 (on this test set {measured:.4f})")
    print(f"{'model':10s}" + "".join(f"{clipping_name(*c):>22s}" for c in runs))
    for kind in kinds:
        print(f"{MODELS[kind]:10s}" + "".join(f"{results[kind, c]:>22.4f}" for c in runs))
    if args.plot:
        plot(curves, args.plot, args.seq_len)


if __name__ == "__main__":
    main()
