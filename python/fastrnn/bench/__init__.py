"""The fastrnn benchmark: ``python -m fastrnn.bench`` times fastrnn against torch.nn.

Modules, in the order a run uses them:

- ``config``: what one run measures (:class:`BenchConfig`) and its presets.
- ``workloads``: the cells, the implementations under test, the timed steps and the FLOP model.
- ``check``: the parity check that must pass before any number is reported.
- ``timing``: the interleaved wall-clock timer.
- ``results``: one :class:`Result` per (cell, mode, implementation) and the JSON file.
- ``environment``: the machine and library versions the numbers belong to.
- ``report``: the header, the table and the footer that are printed.
- ``cli``: the command line, which ties the above together.
"""

from .cli import main

__all__ = ["main"]
