"""The memory a train step's forward keeps for backward, per implementation.

Measured on one untimed forward with ``torch.autograd.graph.saved_tensors_hooks``: the pack hook
sees every tensor an autograd node saves (``save_for_backward`` of a custom op, the inputs and
results built-in nodes keep), and the bytes counted are those of the distinct storages behind
them, so a tensor saved by two nodes, or views of one buffer saved separately, count once.
torch.nn.LSTM on CPU in float32 runs through oneDNN (aten::mkldnn_rnn_layer), whose workspace is
a uint8 tensor saved by its MkldnnRnnLayerBackward0 node: the hook sees it like any other (checked
with torch 2.13), so it is counted. cuDNN's reserve is saved the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .workloads import Runner, Workload


@dataclass
class SavedBytes:
    all: int  # every storage saved for backward
    extra: int  # those other than the input's and the parameters', which exist anyway


def saved_for_backward(runner: Runner, workload: Workload) -> SavedBytes:
    """The bytes saved for backward by one forward of ``runner`` with gradients enabled."""
    storages = {}  # data_ptr -> storage; holding the storage keeps its address from being reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages.setdefault(storage.data_ptr(), storage)
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = runner.forward(workload.input)
    del outputs  # frees the graph; the counted storages stay alive in `storages` until we return
    existing = {t.untyped_storage().data_ptr() for t in runner.leaves(workload)}
    return SavedBytes(
        all=sum(s.nbytes() for s in storages.values()),
        extra=sum(s.nbytes() for ptr, s in storages.items() if ptr not in existing),
    )
