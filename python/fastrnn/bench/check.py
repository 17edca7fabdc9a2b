"""The parity check: every implementation must agree with the baseline before it is timed.

Inference compares output and h_n; train also compares the gradients of the input and of every
parameter. A tensor agrees when ``allclose(actual, expected, rtol, atol * scale)`` holds, with
``scale = max|expected|``: gradients summed over T steps are large, and their error grows with them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from .workloads import Runner, Workload

TOLERANCES = {  # dtype name -> (rtol, atol relative to max|expected|)
    "float32": (1e-4, 1e-4),
    "float64": (1e-10, 1e-10),
}


@dataclass
class Check:
    case: str  # Case.describe()
    mode: str
    impl: str
    tensor: str
    max_abs_err: float
    scale: float  # max|expected|
    ok: bool

    def describe(self) -> str:
        rel = self.max_abs_err / self.scale
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.case} {self.mode} {self.impl} {self.tensor}: max abs err "
                f"{self.max_abs_err:.3e}, {rel:.3e} of max|expected| {self.scale:.3e}: {verdict}")


def _named_outputs(runner: Runner, workload: Workload, mode: str) -> dict[str, Tensor]:
    x, forward = workload.input, runner.forward
    if mode == "inference":
        with torch.inference_mode():
            output, h_n = forward(x)
        return {"output": output, "h_n": h_n.reshape(workload.grad_h_n.shape)}
    output, h_n = forward(x)
    leaves = dict(input=x, **runner.params)
    grads = torch.autograd.grad((output, h_n), list(leaves.values()),
                                (workload.grad_output, workload.grad_h_n.view_as(h_n)))
    named = {"output": output.detach(), "h_n": h_n.detach().reshape(workload.grad_h_n.shape)}
    named.update({f"grad_{name}": g for name, g in zip(leaves, grads)})
    return named


def _compare(actual: Tensor, expected: Tensor, rtol: float, atol: float) -> tuple[float, float, bool]:
    scale = expected.abs().max().item() if expected.numel() else 0.0
    if actual.shape != expected.shape:
        return float("inf"), scale, False
    max_abs_err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    ok = torch.allclose(actual, expected, rtol=rtol, atol=atol * max(scale, 1e-30))
    return max_abs_err, scale, ok


def check_parity(workload: Workload, mode: str, runners: dict[str, Runner], baseline: str,
                 dtype: str) -> list[Check]:
    """Compare every runner in ``runners`` other than ``baseline`` with it, tensor by tensor."""
    rtol, atol = TOLERANCES[dtype]
    expected = _named_outputs(runners[baseline], workload, mode)
    checks = []
    for impl, runner in runners.items():
        if impl == baseline:
            continue
        actual = _named_outputs(runner, workload, mode)
        for name, want in expected.items():
            err, scale, ok = _compare(actual[name], want, rtol, atol)
            checks.append(Check(workload.case.describe(), mode, impl, name, err, scale, ok))
    return checks


@dataclass
class HalfCheck(Check):
    """A bfloat16 check: the error against the float32 baseline, within ``budget``."""

    budget: float = 0.0  # 2 x the baseline's own error at this precision (the tests' rule)

    def describe(self) -> str:
        return super().describe() + f" (budget {self.budget:.3e})"


def check_parity_half(workload: Workload, mode: str, runners: dict[str, Runner], baseline: str,
                      exact: Workload, exact_baseline: Runner) -> list[HalfCheck]:
    """Half precision: every runner other than ``baseline`` and the baseline itself are measured
    against ``exact_baseline`` run in float32 on ``exact`` (the workload's values, upcast); a
    tensor agrees when its error is at most twice the baseline's (STYLE.md: 2x PyTorch's own
    error at that precision), plus 1e-6 of max|expected| for tensors the baseline gets exact."""
    expected = _named_outputs(exact_baseline, exact, mode)
    by_impl = {impl: _named_outputs(runner, workload, mode) for impl, runner in runners.items()}
    checks = []
    for name, want in expected.items():
        scale = want.abs().max().item() if want.numel() else 0.0

        def error(impl: str) -> float:
            got = by_impl[impl][name]
            if got.shape != want.shape:
                return float("inf")
            return (got.float() - want).abs().max().item() if want.numel() else 0.0
        budget = 2.0 * error(baseline) + 1e-6 * scale
        for impl in runners:
            if impl != baseline:
                err = error(impl)
                checks.append(HalfCheck(workload.case.describe(), mode, impl, name, err, scale,
                                        err <= budget, budget))
    return checks


def upcast(workload: Workload) -> Workload:
    """The workload in float32 with the same values (the exact side of a half-precision check)."""
    def up(t):
        return t.detach().float().requires_grad_(t.requires_grad)
    return dataclasses.replace(workload, module=copy.deepcopy(workload.module).float(),
                               input=up(workload.input), grad_output=up(workload.grad_output),
                               grad_h_n=up(workload.grad_h_n))
