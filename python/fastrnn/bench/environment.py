"""The machine and the library versions a run's numbers belong to."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from .. import _C
from .. import __version__ as fastrnn_version


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float] | None:
    """The system load averages over 1, 5 and 15 minutes, where the OS reports them."""
    try:
        return os.getloadavg()
    except OSError:
        return None


@dataclass
class Environment:
    cpu: str
    logical_cpus: int | None
    torch_threads: int
    torch: str
    fastrnn: str
    python: str
    platform: str
    mkldnn: bool  # torch.nn may run its CPU LSTM through oneDNN when this is on
    load_average: tuple[float, float, float] | None  # 1, 5, 15 min, when collected: other load adds noise
    device: str = "cpu"  # where the cases run
    gpu: str | None = None  # on cuda: the GPU's name, SM count, CUDA and cuDNN versions
    cpu_isa: str = ""  # the instruction set fastrnn's CPU kernels run with
    gemm_engine: str = ""  # the engine of fastrnn's whole-sequence GEMMs: torch (MKL) or openblas

    @classmethod
    def collect(cls, device: str = "cpu") -> Environment:
        gpu = None
        if device == "cuda":
            sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
            gpu = (f"{torch.cuda.get_device_name()}, {sms} SMs, CUDA {torch.version.cuda}, "
                   f"cuDNN {torch.backends.cudnn.version()}")
        return cls(
            cpu=cpu_model(),
            logical_cpus=os.cpu_count(),
            torch_threads=torch.get_num_threads(),
            torch=torch.__version__,
            fastrnn=fastrnn_version,
            python=platform.python_version(),
            platform=platform.platform(),
            mkldnn=torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            load_average=load_average(),
            device=device,
            gpu=gpu,
            cpu_isa=_C.cpu_isa(),
            gemm_engine=_C.gemm_engine(),
        )
