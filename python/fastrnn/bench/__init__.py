"""The fastrnn benchmark: ``python -m fastrnn.bench`` times fastrnn against torch.nn.

Console script entry point: ``fastrnn.bench.cli:main``.

Modules, in the order a run uses them:

- ``config``: what one run measures (:class:`BenchConfig`: a list of cases) and its presets.
- ``workloads``: the cells, the cases, the implementations under test (torch, fastrnn,
  torch-native, reference), the timed steps and the FLOP model.
- ``peak``: the fp32 GEMM peak (OpenBLAS sgemm and torch.mm; torch.mm on cuda) the GFLOP/s are
  judged against.
- ``check``: the parity check that must pass before any number is reported.
- ``memory``: the bytes a train step's forward saves for backward, per implementation.
- ``timing``: the interleaved timer (wall clock; CUDA events on cuda).
- ``results``: one :class:`Result` per (thread count, case, mode, implementation) and the JSON
  and CSV files.
- ``environment``: the machine and library versions the numbers belong to.
- ``report``: the header, the table and the footer that are printed.
- ``plot``: the ``--plot`` figure of the speedups (matplotlib, optional).
- ``gpu``: the ``--device cuda`` runs and the gpu presets' case table: what ran is checked
  (cuDNN or not, fastrnn's own op), bfloat16 parity, TFLOP/s and GB/s, TF32 pinned.
- ``cli``: the command line, which ties the above together.
"""

from .cli import main

__all__ = ["main"]
