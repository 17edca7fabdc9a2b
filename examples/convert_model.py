"""fastrnn.convert on an existing torch model: every torch.nn RNN/LSTM/GRU and cell inside it
runs on fastrnn's kernels, with the same parameters, the same results, and the optimizer made
before the conversion still training it.

    python examples/convert_model.py
"""

import copy

import torch
from torch import nn

import fastrnn


class Classifier(nn.Module):
    """An ordinary torch model: a bidirectional LSTM encoder, a GRU cell over its outputs."""

    def __init__(self, vocab_size=50, hidden_size=32, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 16)
        self.encoder = nn.LSTM(16, hidden_size, num_layers=2, bidirectional=True,
                               batch_first=True)
        self.summary = nn.GRUCell(2 * hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, classes)

    def forward(self, ids):
        output, _ = self.encoder(self.embed(ids))
        h = None
        for x_t in output.unbind(1):
            h = self.summary(x_t, h)
        return self.head(h)


def main():
    torch.manual_seed(0)
    model = Classifier()
    original = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # made before converting

    fastrnn.convert(model, inplace=True)
    print("converted:", {name: type(m).__module__ + "." + type(m).__name__
                         for name, m in model.named_modules()
                         if type(m).__module__.startswith("fastrnn")})

    ids = torch.randint(0, 50, (8, 20))
    labels = torch.randint(0, 3, (8,))
    with torch.no_grad():
        difference = (model(ids) - original(ids)).abs().max().item()
    print(f"largest difference from the original model's logits: {difference:.2e}")

    for step in range(1, 6):
        loss = nn.functional.cross_entropy(model(ids), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
