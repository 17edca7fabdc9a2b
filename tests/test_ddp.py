"""DistributedDataParallel over fastrnn.LSTM: two processes on the gloo backend (CPU) train the
same small model for a few steps, once with fastrnn.LSTM and once with torch.nn.LSTM, and end
with the same parameters."""

import datetime
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tolerances import assert_close

WORLD_SIZE = 2
STEPS = 4
TIMEOUT_S = 120


class Model(torch.nn.Module):
    def __init__(self, namespace):
        super().__init__()
        self.lstm = namespace.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True,
                                   dtype=torch.float64)
        self.head = torch.nn.Linear(16, 2, dtype=torch.float64)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output.mean(dim=1))


def _train(namespace, rank):
    """STEPS of SGD under DDP, each rank on its own batches; returns the final parameters."""
    torch.manual_seed(0)  # the same initial weights on every rank and for both namespaces
    model = torch.nn.parallel.DistributedDataParallel(Model(namespace))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(100 + rank)
    for _ in range(STEPS):
        x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)
        target = torch.randn(4, 2, generator=gen, dtype=torch.float64)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()
    return {name: p.detach().clone() for name, p in model.module.named_parameters()}


def _worker(rank, port, path):
    import fastrnn  # in the spawned process

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        initial = {name: p.detach().clone() for name, p in Model(torch.nn).named_parameters()}
        results = {"initial": initial, "fastrnn": _train(fastrnn, rank),
                   "torch.nn": _train(torch.nn, rank)}
        torch.save(results, f"{path}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_matches_torch_nn(tmp_path):
    context = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)),
                                 nprocs=WORLD_SIZE, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=max(1.0, deadline - time.monotonic())):
            assert time.monotonic() < deadline, f"DDP run did not finish in {TIMEOUT_S} s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for rank, result in enumerate(results):
        for name, value in result["fastrnn"].items():
            assert not torch.equal(value, result["initial"][name]), f"{name} did not change"
            assert_close(value, result["torch.nn"][name], "grad", f"rank {rank}: {name}")
            # DDP keeps the replicas in sync
            assert torch.equal(value, results[0]["fastrnn"][name]), f"rank {rank}: {name}"
