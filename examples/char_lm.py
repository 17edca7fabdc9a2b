"""A character-level language model on fastrnn.LSTM: embedding -> LSTM -> linear.

Trains on a text file (by default the Zen of Python, which ships with Python as the `this`
module), prints the loss as it goes down, then generates a sample one character at a time,
carrying the LSTM's state from step to step.

Two kinds of clipping, which combine: --clip-norm rescales all the gradients after backward when
their global norm exceeds it (torch.nn.utils.clip_grad_norm_); --grad-clip and --cell-clip are
fastrnn.LSTM's in-kernel options, the gradient of every gate pre-activation clamped to
[-G, G] at every step of backward, and the cell state clamped to [-C, C] in forward.

    python examples/char_lm.py                       # the Zen of Python, 300 steps
    python examples/char_lm.py --text some_file.txt --steps 2000 --hidden-size 256
    python examples/char_lm.py --clip-norm 0 --grad-clip 0.1 --cell-clip 10   # in-kernel only
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import time

import torch
from torch import nn

import fastrnn


def zen_of_python() -> str:
    """The text of `import this`, without printing it."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return codecs.decode(this.s, "rot13")


class CharLM(nn.Module):
    """Embedding -> fastrnn.LSTM -> linear; ``grad_clip`` and ``cell_clip`` (None: off) are the
    LSTM's in-kernel clipping options."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 dropout: float, grad_clip: float | None = None, cell_clip: float | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size)
        self.lstm = fastrnn.LSTM(embedding_size, hidden_size, num_layers=num_layers,
                                 batch_first=True, dropout=dropout if num_layers > 1 else 0.0,
                                 grad_clip=grad_clip, cell_clip=cell_clip)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids, state=None):
        """ids [B, T] -> logits [B, T, V] and the LSTM's final (h, c)."""
        output, state = self.lstm(self.embed(ids), state)
        return self.head(output), state


def batches(data: torch.Tensor, batch_size: int, seq_len: int, gen: torch.Generator):
    """Random windows of the text: inputs [B, T] and their next characters [B, T]."""
    while True:
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=gen)
        windows = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()])
        yield windows[:, :-1], windows[:, 1:]


@torch.no_grad()
def sample(model: CharLM, prompt: torch.Tensor, length: int, temperature: float,
           gen: torch.Generator) -> list[int]:
    """Feed the prompt, then draw `length` characters, one LSTM step per character."""
    model.eval()
    logits, state = model(prompt.unsqueeze(0))
    drawn = []
    for _ in range(length):
        probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
        next_id = torch.multinomial(probs, 1, generator=gen)
        drawn.append(int(next_id))
        logits, state = model(next_id.view(1, 1), state)
    model.train()
    return drawn


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", help="a UTF-8 text file (default: the Zen of Python)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--embedding-size", type=int, default=32)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.0, help="between layers")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--clip-norm", "--clip", type=float, default=1.0,
                        help="max global gradient norm, torch.nn.utils.clip_grad_norm_ "
                             "(0: no clipping)")
    parser.add_argument("--grad-clip", type=float, default=0.0, metavar="G",
                        help="fastrnn.LSTM's in-kernel grad_clip: each gate pre-activation's "
                             "gradient clamped to [-G, G] at every step of backward (0: off)")
    parser.add_argument("--cell-clip", type=float, default=0.0, metavar="C",
                        help="fastrnn.LSTM's in-kernel cell_clip: the cell state clamped to "
                             "[-C, C] at every step of forward (0: off)")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("clip_norm", "grad_clip", "cell_clip"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0 (0: off)")

    if args.text:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
    else:
        text = zen_of_python()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text])
    seq_len = min(args.seq_len, len(data) - 2)
    print(f"text: {len(text)} characters, {len(chars)} distinct; "
          f"model: embedding {args.embedding_size}, fastrnn.LSTM hidden {args.hidden_size} "
          f"x {args.num_layers} layers")
    clipping = [f"clip_grad_norm_ {args.clip_norm:g}"] if args.clip_norm else []
    clipping += [f"{name} {value:g}" for name, value in
                 (("grad_clip", args.grad_clip), ("cell_clip", args.cell_clip)) if value]
    print(f"clipping: {', '.join(clipping) or 'none'}")

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = CharLM(len(chars), args.embedding_size, args.hidden_size, args.num_layers,
                   args.dropout, grad_clip=args.grad_clip or None,
                   cell_clip=args.cell_clip or None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    start, running = time.perf_counter(), []
    for step, (inputs, targets) in zip(range(1, args.steps + 1),
                                       batches(data, args.batch_size, seq_len, gen)):
        logits, _ = model(inputs)
        loss = loss_fn(logits.reshape(-1, len(chars)), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        if args.clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip_norm)
        optimizer.step()
        running.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {sum(running) / len(running):.3f}  "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            running = []

    prompt = data[:min(8, len(data))]
    drawn = sample(model, prompt, args.sample_length, args.temperature, gen)
    print("sample:")
    print("".join(chars[i] for i in prompt.tolist() + drawn))


if __name__ == "__main__":
    main()
