"""What the modules' options cost: record_grad_norms and the in-kernel clips on vs off, on the same
weights, one process, the two modules alternating per round (median of 5 training calls each);
prints the median over 16 rounds of time off / time on (below 1: the option costs time).

    .venv/bin/python benchmarks/options_cost.py
"""

import statistics
import time

import torch

import fastrnn

torch.set_num_threads(2)


def case(cls, **options):
    torch.manual_seed(0)
    off = getattr(fastrnn, cls)(256, 256)
    on = getattr(fastrnn, cls)(256, 256, **options)
    on.load_state_dict(off.state_dict())
    x = torch.randn(100, 32, 256, requires_grad=True)

    def step(module):
        output, _ = module(x)
        output.sum().backward()

    ratios = []
    for r in range(16):
        times = {}
        order = (("off", off), ("on", on)) if r % 2 == 0 else (("on", on), ("off", off))
        for name, module in order:
            step(module)
            calls = []
            for _ in range(5):
                t0 = time.perf_counter()
                step(module)
                calls.append(time.perf_counter() - t0)
            times[name] = statistics.median(calls)
        ratios.append(times["off"] / times["on"])
    print(f"{cls} {options}: median ratio off/on {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    case("LSTM", record_grad_norms=True)
    case("GRU", record_grad_norms=True)
    case("LSTM", grad_clip=0.5, cell_clip=10.0)
    case("GRU", grad_clip=0.5)
