"""fastrnn: fused LSTM, GRU and RNN kernels for PyTorch, on the CPU.

``fastrnn.LSTM``, ``GRU``, ``RNN`` and the ``*Cell`` classes are drop-in subclasses of their
torch.nn namesakes; ``fastrnn.convert(model)`` swaps them into an existing model and
``fastrnn.revert(model)`` swaps them back. ``fastrnn.functional`` runs one layer (or a whole
stack) on tensors; ``fastrnn.reference`` holds the pure-PyTorch ground truth the kernels are
tested against; ``fastrnn.init`` holds initialisations for recurrent
modules (IRNN, orthogonal, forget bias, chrono), ``fastrnn.seq2seq`` a decoder with teacher
forcing and scheduled sampling, and ``fastrnn.plot`` a plot of the gradient norms the modules
record with ``record_grad_norms=True`` (matplotlib, optional). The ops themselves are ``torch.ops.fastrnn.*``.

Devices: fastrnn's kernels run on the CPU only (float32, float64, bfloat16, float16). The CUDA
kernels have not run on a GPU yet: ``cuda_available()`` is always False, the modules on CUDA
tensors run torch.nn's implementation (cuDNN) with a warning, and ``fastrnn.functional`` on CUDA
tensors raises. ``empty_cache()`` frees the scratch memory the CPU kernels keep between calls.
"""

import torch  # (loads libtorch before our extension links against it)

# How to rebuild for the torch installed now; the README's "Install" says the same.
_REBUILD = ("rebuild fastrnn against the torch installed now, from its source tree: `pip install "
            "scikit-build-core pybind11 ninja cmake scipy-openblas32`, then `pip install "
            "--no-build-isolation --no-deps --force-reinstall .`")


def _check_torch() -> None:
    """Raise ImportError, saying which torch fastrnn was built against and how to rebuild, when
    that is not the torch imported: the extension links against libtorch's C++ ABI, which
    changes between versions (the failure would otherwise be an undefined symbol)."""
    try:
        from ._build_info import TORCH_VERSION as built_with
    except ImportError:  # a source tree rather than an installed build
        raise ImportError(f"fastrnn is not built here ({__file__} has no _build_info.py); "
                          f"install it with `pip install --no-build-isolation .` (README, "
                          f"\"Install\")") from None
    if torch.__version__ != built_with:
        raise ImportError(f"fastrnn was built against torch {built_with}, but torch "
                          f"{torch.__version__} is installed; {_REBUILD}")


_check_torch()
try:
    from . import _C
except ImportError as e:
    raise ImportError(f"fastrnn's extension (fastrnn._C) failed to load: {e}. It was built "
                      f"against torch {torch.__version__}, the torch installed; if that or its "
                      f"libraries changed since, {_REBUILD}") from e

from . import ops  # noqa: F401  (fake kernels of torch.ops.fastrnn.*)
from . import functional, init, plot, reference, seq2seq
from .emulation import EmulationStats, cuda_emulation
from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, convert, revert

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """Whether this build compiled the CUDA sources (torch with CUDA and nvcc at build time).

    The CUDA drivers compile and pass the tests under host emulation (``cuda_emulation``), but
    have not run on a GPU, so they stay off: see ``cuda_available``."""
    return bool(_C.built_with_cuda)


def cuda_available() -> bool:
    """Whether fastrnn can run on CUDA tensors here: CUDA kernels built and a GPU visible.

    Always False in this version, whatever the build and the machine: the CUDA drivers have not
    run on a GPU yet (``FASTRNN_EXPERIMENTAL_CUDA=1`` lets ``fastrnn.functional`` use them on a
    CUDA build, for .ci/gpu-check). fastrnn's modules on CUDA tensors run torch.nn's
    implementation (cuDNN) with a warning; ``fastrnn.functional`` on CUDA tensors raises."""
    return bool(_C.has_cuda_kernels) and torch.cuda.is_available()


def empty_cache() -> None:
    """Free the large scratch buffers (256 KiB and more) that fastrnn's CPU kernels keep
    between calls (training calls' reserves among them, once their graphs are freed), as
    ``torch.cuda.empty_cache()`` frees CUDA memory torch keeps.

    The kernels keep up to 256 MiB of freed buffers for the next calls, because fresh memory
    costs a page fault per 4 KiB page the first time it is written, which a call of a large
    layer would otherwise pay on every call. Nothing that a tensor uses is freed; the next
    calls allocate again."""
    _C.empty_cpu_cache()


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "convert", "revert",
           "cuda_emulation", "EmulationStats", "functional", "init", "plot", "reference", "seq2seq",
           "built_with_cuda", "cuda_available", "empty_cache", "__version__"]
