"""The benchmark CLI, ``python -m fastrnn.bench``, run end to end in a subprocess (tiny shapes)."""

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastrnn
from fastrnn.bench.cli import config_from_args, main, parse_args
from fastrnn.bench.memory import saved_for_backward
from fastrnn.bench.plot import MISSING, speedup_figure
from fastrnn.bench.results import Result, add_speedups
from fastrnn.bench.timing import time_interleaved
from fastrnn.bench.workloads import IMPLS as RUNNERS
from fastrnn.bench.workloads import Case, Runner, exact_fp32, make_workload

IMPLS = ("torch", "fastrnn", "torch-native", "reference")
CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


def bench(*args: str, returncode: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "fastrnn.bench", *args], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == returncode, proc.stdout + proc.stderr
    return proc


def table_rows(stdout: str) -> list[list[str]]:
    """The rows of the results table: the lines between the two rules under its header."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("thr "))
    assert set(lines[start + 1]) == {"-"}
    end = next(i for i in range(start + 2, len(lines)) if lines[i] and set(lines[i]) == {"-"})
    return [line.split() for line in lines[start + 2:end] if line.strip()]


def test_smoke_prints_the_table_and_writes_json_and_csv(tmp_path):
    out = bench("--smoke", "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"))
    assert "fastrnn benchmark" in out.stdout
    assert "agree with torch" in out.stdout
    assert "peak      OpenBLAS" in out.stdout or "OpenBLAS unavailable" in out.stdout
    engine = {"torch": "torch.mm (MKL)", "openblas": "OpenBLAS"}[fastrnn._C.gemm_engine()]
    assert (f"kernels   fastrnn CPU kernels on {fastrnn._C.cpu_isa()}; whole-sequence GEMMs "
            f"through {engine}") in out.stdout
    rows = table_rows(out.stdout)
    # thr cell TxBxIxH L D input mode impl median min max GFLOP/s %peak vs-torch saved-MiB (train)
    assert {(r[1], r[6], r[7]) for r in rows} == {
        (cell, mode, impl) for cell in CELLS for mode in ("inference", "train")
        for impl in ("torch", "fastrnn")}
    assert all(len(r) == (15 if r[6] == "train" else 14) and r[2] == "5x3x8x8" and
               r[5] == "padded" for r in rows)
    assert all(r[13] == "1.00x" for r in rows if r[7] == "torch")

    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["results"]) == len(rows) == 16
    assert data["peaks"] and data["checks"] and all(c["ok"] for c in data["checks"])
    assert all(len(r["times_ms"]) == 2 for r in data["results"])
    for r in data["results"]:
        if r["mode"] == "train":
            assert 0 < r["saved_bytes"] < r["saved_bytes_all"]
        else:
            assert r["saved_bytes"] is None and r["saved_bytes_all"] is None

    with open(tmp_path / "r.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 16
    for rec in records:
        assert float(rec["median_ms"]) > 0 and float(rec["gflops"]) > 0
        assert float(rec["min_ms"]) <= float(rec["median_ms"]) <= float(rec["max_ms"])
        assert float(rec["speedup"]) > 0 and rec["threads"].isdigit()
        assert rec["pct_peak"] == "" or float(rec["pct_peak"]) > 0
        if rec["mode"] == "train":
            assert 0 < int(rec["saved_bytes"]) < int(rec["saved_bytes_all"])
        else:
            assert rec["saved_bytes"] == rec["saved_bytes_all"] == ""


def test_every_impl_layers_bidirectional_threads(tmp_path):
    out = bench("--preset", "smoke", "--impls", ",".join(IMPLS), "--cells", "lstm,gru",
                "--T", "3", "--B", "2", "--I", "4", "--H", "5", "--layers", "2",
                "--bidirectional", "--threads", "1,2", "--no-peak", "--csv",
                str(tmp_path / "r.csv"), "--plot", str(tmp_path / "plots" / "speedup.png"))
    assert "peak      " not in out.stdout
    rows = table_rows(out.stdout)
    assert {(r[0], r[1], r[6], r[7]) for r in rows} == {
        (thr, cell, mode, impl) for thr in ("1", "2") for cell in ("lstm", "gru")
        for mode in ("inference", "train") for impl in IMPLS}
    assert all(r[2:5] == ["3x2x4x5", "2", "2"] for r in rows)
    with open(tmp_path / "r.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 2 * 2 * 2 * len(IMPLS)
    assert all(rec["layers"] == "2" and rec["bidirectional"] == "True" for rec in records)
    assert all(rec["pct_peak"] == "" for rec in records)
    # FLOP model: per layer D*2*T*B*G*H*(I_l+H), I_0 = I, I_1 = D*H; train = 3x inference.
    lstm = next(r for r in records if r["cell"] == "lstm" and r["mode"] == "inference")
    want = sum(2 * 2 * 3 * 2 * 4 * 5 * (i + 5) for i in (4, 10))
    assert float(lstm["gflop"]) * 1e9 == pytest.approx(want)
    # The plot: a PNG (signature, then the IHDR chunk: width, height) of a real figure.
    png = (tmp_path / "plots" / "speedup.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 600 and height >= 600 and len(png) > 20_000


def test_readme_preset_with_its_shapes_overridden():
    # The readme cases at a tiny shape: duplicates drop out, leaving one case per (cell, layers),
    # the float64 row and the bfloat16 rows.
    out = bench("--preset", "readme", "--T", "2", "--B", "2", "--I", "4", "--H", "4",
                "--repeats", "1", "--warmup", "0", "--settle-ms", "0", "--no-peak")
    rows = table_rows(out.stdout)
    cases = {(r[1], r[3], r[4], r[5]) for r in rows}  # cell, layers, directions, input
    assert cases == {("lstm", "1", "1", "padded"), ("gru", "1", "1", "padded"),
                     ("rnn_tanh", "1", "1", "padded"), ("lstm", "2", "1", "padded"),
                     ("lstm", "1", "1", "packed(uniform)"), ("gru", "1", "1", "packed(uniform)"),
                     ("lstm", "2", "2", "packed(uniform),bf"), ("lstm(float64)", "1", "1", "padded"),
                     ("lstm(bfloat16)", "1", "1", "padded"), ("gru(bfloat16)", "1", "1", "padded"),
                     ("rnn_tanh(bfloat16)", "1", "1", "padded")}
    assert len(rows) == len(cases) * 2 * 2


def test_packed_and_batch_first_every_impl(tmp_path):
    """A packed, batch-first case end to end: every implementation passes the parity check
    (outputs, h_n and gradients) and GFLOP counts only the rows of the sequences."""
    out = bench("--preset", "smoke", "--impls", ",".join(IMPLS), "--cells", "lstm,rnn_relu",
                "--T", "6", "--B", "4", "--layers", "2", "--bidirectional", "--packed",
                "uniform", "--batch-first", "--no-peak", "--csv", str(tmp_path / "r.csv"))
    assert "agree with torch" in out.stdout and "packed(DIST)" in out.stdout
    rows = table_rows(out.stdout)
    assert {(r[1], r[5], r[6], r[7]) for r in rows} == {
        (cell, "packed(uniform),bf", mode, impl) for cell in ("lstm", "rnn_relu")
        for mode in ("inference", "train") for impl in IMPLS}
    with open(tmp_path / "r.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert all(rec["packed"] == "uniform" and rec["batch_first"] == "True" for rec in records)
    N = int(Case("lstm", 6, 4, 8, 8, packed="uniform").lengths(seed=0).sum())
    assert N < 6 * 4  # uniform lengths: shorter than padded, or the test proves nothing
    lstm = next(r for r in records if r["cell"] == "lstm" and r["mode"] == "inference")
    # FLOP model with N rows: per layer D*2*N*G*H*(I_l+H), I_0 = I = 8, I_1 = D*H
    assert float(lstm["gflop"]) * 1e9 == pytest.approx(sum(2 * 2 * N * 4 * 8 * (i + 8)
                                                           for i in (8, 16)))


@pytest.mark.parametrize("text,want", [("uniform", "uniform"), ("0.50", "0.5"), ("1", "1")])
def test_packed_option_parses_the_length_distribution(text, want):
    config = config_from_args(parse_args(["--smoke", "--packed", text, "--batch-first"]))
    assert all(c.packed == want and c.batch_first for c in config.cases)
    assert all(c.packed is None and not c.batch_first
               for c in config_from_args(parse_args(["--smoke"])).cases)


@pytest.mark.parametrize("packed,low", [("uniform", 1), ("0.5", 5), ("1", 10)])
def test_packed_lengths_follow_the_distribution(packed, low):
    lengths = Case("gru", 10, 64, 4, 4, packed=packed).lengths(seed=3)
    assert lengths.dtype == torch.int64 and lengths.shape == (64,) and lengths[0] == 10
    assert int(lengths.min()) >= low and int(lengths.max()) == 10
    if packed == "uniform":
        assert int(lengths.min()) < 5  # 63 draws on 1..10 stay above 4 with probability 1e-14
    assert torch.equal(lengths, Case("gru", 10, 64, 4, 4, packed=packed).lengths(seed=3))


@pytest.mark.parametrize("rewarm_s,untimed_per_run", [(0.0, 0), (1e-9, 1)])
def test_runs_start_with_untimed_calls_after_the_idle_time(rewarm_s, untimed_per_run):
    # 5 timed calls each in runs of 2: 3 runs per step, each after its untimed calls (at least
    # one when rewarm_s > 0; one call outlasts 1 ns). The timer marks which calls it times.
    log = []
    steps = {name: (lambda name=name: log.append(name)) for name in ("a", "b")}

    def timer(step):
        log.append("timed")
        step()
        return 1.0

    times = time_interleaved(steps, repeats=5, warmup=1, block=2, rewarm_s=rewarm_s, timer=timer)
    assert times == {"a": [1.0] * 5, "b": [1.0] * 5}
    assert log.count("timed") == 10
    untimed = [name for i, name in enumerate(log) if name != "timed" and
               (i == 0 or log[i - 1] != "timed")]
    assert len(untimed) == 2 + 2 * 3 * untimed_per_run  # warmup, then per run
    # every run (a block of timed calls of one step) follows an untimed call of that step
    if untimed_per_run:
        for i, name in enumerate(log):
            if name == "timed" and (i < 2 or log[i - 2] != "timed"):
                assert log[i - 1] == log[i + 1] != "timed"


def test_rewarm_in_the_header_and_the_json(tmp_path):
    out = bench("--smoke", "--cells", "lstm", "--modes", "inference", "--rewarm-ms", "7",
                "--json", str(tmp_path / "r.json"))
    assert "0 ms idle and 7 ms of untimed calls before each run" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["config"]["rewarm_ms"] == 7


@pytest.mark.parametrize("args", [["--impls", "fastrnn"], ["--impls", "torch,nope"],
                                  ["--rewarm-ms", "-1"],
                                  ["--preset", "readme", "--cells", "rnn_relu"],
                                  ["--smoke", "--preset", "readme"],
                                  ["--smoke", "--impls", "torch", "--plot", "p.png"],
                                  ["--smoke", "--packed", "0"], ["--smoke", "--packed", "1.5"],
                                  ["--smoke", "--packed", "half"]])
def test_bad_arguments_exit_2(args):
    proc = bench(*args, returncode=2)
    assert "fastrnn.bench:" in proc.stderr


def test_device_cuda_runs_only_where_it_can():
    """Without a GPU, or with one but fastrnn's CUDA drivers off, one line on stderr says why."""
    if not torch.cuda.is_available():
        proc = bench("--smoke", "--device", "cuda", returncode=2)
        assert proc.stderr == ("fastrnn.bench: --device cuda: torch.cuda.is_available() is False "
                               "(no GPU, or a torch without CUDA)\n")
    elif fastrnn_cuda_path() is None:
        proc = bench("--smoke", "--device", "cuda", returncode=2)
        assert proc.stderr.count("\n") == 1 and "pass --impls torch,torch-native" in proc.stderr
    else:
        assert "agree with torch" in bench("--smoke", "--device", "cuda").stdout


def test_device_cuda_arguments(monkeypatch):
    """With a GPU (faked here: only the arguments are checked), fastrnn is refused while its
    CUDA drivers are off, and torch,torch-native are accepted."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fastrnn._C, "has_cuda_kernels", False)
    monkeypatch.delenv("FASTRNN_EXPERIMENTAL_CUDA", raising=False)
    with pytest.raises(ValueError, match=r"fastrnn's CUDA drivers are off .*"
                                         r"pass --impls torch,torch-native$"):
        config_from_args(parse_args(["--smoke", "--device", "cuda"]))
    config = config_from_args(parse_args(["--smoke", "--device", "cuda",
                                          "--impls", "torch,torch-native,reference"]))
    assert config.device == "cuda" and config.impls == ("torch", "torch-native", "reference")
    assert config_from_args(parse_args(["--smoke"])).device == "cpu"
    monkeypatch.setattr(fastrnn._C, "has_cuda_kernels", True)
    assert config_from_args(parse_args(["--smoke", "--device", "cuda"])).impls == (
        "torch", "fastrnn")


def test_exact_fp32_turns_tf32_off_on_cuda_only():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        with exact_fp32("cpu"):
            assert cudnn.allow_tf32 and matmul.allow_tf32
        with exact_fp32("cuda"):
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_smoke_with_torch_baselines(tmp_path):
    out = bench("--smoke", "--device", "cuda", "--impls", "torch,torch-native,reference",
                "--json", str(tmp_path / "r.json"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert [c["device"] for c in data["configs"]] == ["cuda"] and data["environment"]["gpu"]
    assert "SMs" in data["environment"]["gpu"] and data["tf32"].count("= False") == 2
    assert data["peaks"] and all(p["device"] == "cuda" and p["torch_mm_gflops"] > 0
                                 for p in data["peaks"])
    assert {r["impl"] for r in data["results"]} == {"torch", "torch-native", "reference"}
    assert all(r["median_ms"] > 0 and r["gbps"] > 0 for r in data["results"])
    assert {r["via"] for r in data["results"] if r["impl"] == "torch-native"} == {"ATen"}
    assert "cuDNN" in out.stdout and "tf32      off" in out.stdout


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def test_saved_bytes_count_each_storage_once_and_leave_out_input_and_parameters():
    workload = make_workload(Case("rnn_tanh", 3, 2, 4, 5), torch.float32, seed=0)
    x, weight = workload.input, torch.randn(3, 2, 4, requires_grad=True)
    kept = []

    def forward(x):
        y = x * weight  # saves x and weight (both leaves)
        z = y.sin()  # saves y
        out = z * z  # saves z twice: counted once
        kept[:] = [y, z]
        return out, out.exp()  # exp saves its result
    saved = saved_for_backward(Runner(forward, {"weight": weight}), workload)
    y, z = kept
    assert saved.extra == nbytes(y, z, x)  # y, z and exp's result, each the size of x
    assert saved.all == saved.extra + nbytes(x, weight)


@pytest.mark.parametrize("cell", CELLS)
def test_saved_bytes_of_fastrnn_are_output_and_reserve(cell):
    """fastrnn's op saves the output and the reserve (docs/stack-op.md; fastrnn._C.reserve_width)
    besides the input and the weights; h0 = zeros is not passed, so not saved."""
    L, D, T, B, I, H = 2, 2, 3, 2, 4, 5
    workload = make_workload(Case(cell, T, B, I, H, layers=L, bidirectional=True), torch.float32,
                             seed=0)
    saved = saved_for_backward(RUNNERS["fastrnn"](workload), workload)
    reserve = T * B * fastrnn._C.reserve_width(cell, L, D, H, 0)
    output = T * B * D * H
    assert saved.extra == 4 * (output + reserve)
    params = nbytes(*workload.module.parameters())
    assert saved.all == saved.extra + nbytes(workload.input) + params


@pytest.mark.parametrize("impl", ["torch", "torch-native", "reference"])
def test_saved_bytes_of_the_baselines(impl):
    workload = make_workload(Case("lstm", 3, 2, 4, 5), torch.float32, seed=0)
    saved = saved_for_backward(RUNNERS[impl](workload), workload)
    # torch.nn keeps at least the gates of every step (4*H per row) for backward.
    assert saved.extra >= 4 * 3 * 2 * 4 * 5
    assert saved.all > saved.extra


def fake_results(threads=(1, 2), impls=("torch", "fastrnn", "torch-native")) -> list[Result]:
    """Results with known speedups: impl k of n runs in (k + 1) / n of torch's time in inference,
    n / (k + 1) times it in train."""
    cases = (Case("lstm", 5, 3, 8, 8), Case("gru", 5, 3, 8, 8, layers=2, bidirectional=True))
    results = []
    for t in threads:
        for case in cases:
            for mode in ("inference", "train"):
                for k, impl in enumerate(impls):
                    ms = (k + 1) / len(impls) if mode == "inference" else len(impls) / (k + 1)
                    results.append(Result.from_times(t, case, mode, impl, [ms / 1e3], 1e9, None))
    add_speedups(results, "torch")
    return results


def test_plot_bars_per_case_mode_and_impl_one_panel_per_thread_count():
    results = fake_results()
    fig = speedup_figure(results, "torch", "the title")
    assert fig.get_suptitle() == "the title"
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["1 thread", "2 threads"]
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["fastrnn", "torch-native"]
    want = sorted(r.speedup for r in results if r.impl != "torch" and r.threads == 1)
    for ax in axes:
        assert ax.get_yscale() == "log"
        assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())
        # 4 groups (2 cases x 2 modes) x 2 implementations, each bar from 1.0 to its speedup
        bars = ax.patches
        assert len(bars) == 8
        ends = sorted(b.get_y() + b.get_height() for b in bars)
        assert ends == pytest.approx(want)
        assert all(b.get_y() == 1.0 for b in bars)
    labels = [t.get_text() for t in axes[-1].get_xticklabels()]
    assert labels == ["lstm\n5x3x8x8\ninference", "lstm\n5x3x8x8\ntrain",
                      "gru\n5x3x8x8 L2 bi\ninference", "gru\n5x3x8x8 L2 bi\ntrain"]


def test_plot_without_another_implementation_is_an_error():
    with pytest.raises(ValueError, match="nothing to plot"):
        speedup_figure(fake_results(impls=("torch",)), "torch", "")


def test_plot_without_matplotlib_exits_2_before_running(monkeypatch, capsys, tmp_path):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["--smoke", "--plot", str(tmp_path / "p.png")]) == 2
    out = capsys.readouterr()
    assert out.err == f"fastrnn.bench: {MISSING}\n" and out.out == ""
    assert not (tmp_path / "p.png").exists()


AB_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ab.py"
ONE_STEP_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "one_step.py"
INSTALLED_SITE = str(Path(fastrnn.__file__).resolve().parent.parent)  # holds the fastrnn tested


def test_ab_script_compares_two_builds():
    """benchmarks/ab.py with the installed build as both A and B: one line per case with both
    medians and the ratio's median, min and max."""
    proc = subprocess.run([sys.executable, str(AB_SCRIPT), INSTALLED_SITE, INSTALLED_SITE,
                           "--rounds", "2", "--calls", "2", "rnn_tanh 3 2 4 train",
                           "lstm_proj 2 3 8 inference", "gru 2 2 4 train_params"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("2 rounds, 2 calls")
    cases = ("rnn_tanh 3 2 4 train", "lstm_proj 2 3 8 inference", "gru 2 2 4 train_params")
    assert len(lines) == 1 + len(cases)
    for line, case in zip(lines[1:], cases):
        assert line.startswith(case)
        ratio = float(line.split("ratio median ")[1].split()[0])
        assert ratio > 0


def test_one_step_script_times_every_call():
    """benchmarks/one_step.py: a line per call, batch and mode with both medians and the ratio."""
    proc = subprocess.run([sys.executable, str(ONE_STEP_SCRIPT), "--H", "8", "--blocks", "1",
                           "--calls", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("1 threads, I = H = 8, no initial state")
    assert len(lines) == 1 + 6 * 2 * 2
    for line in lines[1:]:
        assert line.split()[0] in ("LSTMCell", "GRUCell", "RNNCell", "LSTM", "GRU", "RNN")
        assert float(line.split("ratio")[1]) > 0


def test_one_step_script_with_an_initial_state():
    """--hx: every cell and module called with a state of its kind (a tuple for the LSTMs)."""
    proc = subprocess.run([sys.executable, str(ONE_STEP_SCRIPT), "--H", "8", "--B", "3",
                           "--blocks", "1", "--calls", "2", "--threads", "1", "--hx"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "initial state given" in lines[0] and len(lines) == 1 + 6 * 2


@pytest.mark.parametrize("case,message", [("lstm 3 2 train", "want 'cell T B H mode'"),
                                          ("lstm 3 0 4 train", "must be positive"),
                                          ("lstm 3 2 4 backward", "mode in")])
def test_ab_script_rejects_bad_cases(case, message):
    proc = subprocess.run([sys.executable, str(AB_SCRIPT), INSTALLED_SITE, INSTALLED_SITE, case],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


# ---- the GPU benchmark (--device cuda, the gpu presets): what runs without a GPU -------------
from fastrnn.bench import gpu as gpu_bench  # noqa: E402
from fastrnn.bench.check import check_parity, check_parity_half  # noqa: E402
from fastrnn.bench.config import BenchConfig  # noqa: E402
from fastrnn.bench.environment import Environment  # noqa: E402
from fastrnn.bench.workloads import (CUDA_DTYPES, CUDNN_OP, FASTRNN_OP, bytes_moved,  # noqa: E402
                                     check_device, fastrnn_cuda_path, flop_count, ops_run)


def test_gpu_preset_is_the_issue_table():
    preset = gpu_bench.GPU_PRESETS["gpu"]
    cases = preset.config.cases
    assert preset.dtypes == ("float32", "bfloat16") and preset.config.device == "cuda"
    assert preset.config.impls == ("torch", "fastrnn", "torch-native")
    grid = [c for c in cases if c.layout == "padded" and not c.bidirectional and not c.proj_size]
    assert {(c.cell, c.T, c.B, c.I, c.H) for c in grid} == {
        (cell, 100, B, H, H) for cell in ("lstm", "gru", "rnn_tanh")
        for B in (1, 8, 32, 64, 256) for H in (256, 512, 1024)}
    assert len(grid) == 45
    extras = [c for c in cases if c not in grid]
    assert {c.B for c in extras} == {8, 64}
    for B in (8, 64):
        assert {(c.cell, c.packed, c.bidirectional, c.proj_size) for c in extras if c.B == B} == {
            ("lstm", "uniform", False, 0), ("gru", "uniform", False, 0), ("lstm", None, True, 0),
            ("gru", None, True, 0), ("lstm", None, False, 128)}
    configs = preset.configs()
    assert [c.dtype for c in configs] == ["float32", "bfloat16"]
    assert all(c.cases == cases for c in configs)
    quick = gpu_bench.GPU_PRESETS["gpu-quick"]
    assert set(quick.config.cases) < set(cases) and quick.dtypes == preset.dtypes
    assert quick.config.repeats < preset.config.repeats


def test_gpu_list_prints_the_cases_without_a_gpu():
    out = bench("--preset", "gpu", "--list").stdout.splitlines()
    assert out[0].startswith("preset gpu: 110 runs (55 cases x float32, bfloat16) on cuda; "
                             "modes inference, train; impls torch, fastrnn, torch-native")
    assert len(out) == 1 + 110
    assert out[1].split() == ["float32", "lstm", "T=100", "B=1", "I=256", "H=256", "L=1"]
    assert out[-1].split() == ["bfloat16", "lstm", "T=100", "B=64", "I=512", "H=512", "L=1",
                               "P=128"]
    assert sum("packed(uniform)" in line for line in out) == 2 * 2 * 2
    assert sum("bidirectional" in line for line in out) == 2 * 2 * 2
    # the overrides apply as to any preset; --dtype keeps one of the two
    out = bench("--preset", "gpu-quick", "--list", "--cells", "gru", "--dtype", "bfloat16",
                "--repeats", "3").stdout.splitlines()
    assert out[0].startswith("preset gpu-quick: 6 runs (6 cases x bfloat16)") and len(out) == 7
    assert "3 timed calls each" in out[0]
    assert all(line.split()[:2] == ["bfloat16", "gru"] for line in out[1:])
    # a cpu preset lists too, unchanged in what it would run
    out = bench("--preset", "readme", "--list").stdout.splitlines()
    assert out[0].startswith("preset readme: 15 runs (15 cases x float32) on cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("args", [["--preset", "gpu"], ["--preset", "gpu-quick", "--json", "r.json"],
                                  ["--device", "cuda", "--impls", "torch,torch-native"]])
def test_gpu_runs_without_a_gpu_exit_2_with_one_line(args):
    proc = bench(*args, returncode=2)
    assert proc.stderr == ("fastrnn.bench: --device cuda: torch.cuda.is_available() is False "
                           "(no GPU, or a torch without CUDA)\n")
    assert proc.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["--preset", "gpu", "--device", "cpu"], "--preset gpu runs on --device cuda"),
    (["--preset", "gpu", "--list", "--cells", "rnn_relu"], "the preset has no case of cells")])
def test_gpu_bad_arguments_exit_2(args, message):
    proc = bench(*args, returncode=2)
    assert proc.stderr.startswith("fastrnn.bench: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_fastrnn_on_cuda_only_through_its_drivers(monkeypatch):
    """With a GPU (faked), fastrnn is timed only where its op runs the CUDA drivers: never
    through modules that would fall back to torch.nn."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fastrnn._C, "has_cuda_kernels", False)
    for built, env, path in [(False, "1", None), (True, None, None), (True, "0", None),
                             (True, "1", "functional")]:
        monkeypatch.setattr(fastrnn._C, "built_with_cuda", built)
        if env is None:
            monkeypatch.delenv("FASTRNN_EXPERIMENTAL_CUDA", raising=False)
        else:
            monkeypatch.setenv("FASTRNN_EXPERIMENTAL_CUDA", env)
        assert fastrnn_cuda_path() == path
        if path is None:
            why = "FASTRNN_EXPERIMENTAL_CUDA is not 1" if built else "has no CUDA kernels"
            with pytest.raises(ValueError, match=f"fastrnn's CUDA drivers are off \\(.*{why}.*"
                                                 "report cuDNN's times as fastrnn's"):
                check_device("cuda", ("torch", "fastrnn"))
        else:
            check_device("cuda", ("torch", "fastrnn"))
        check_device("cuda", ("torch", "torch-native"))
    monkeypatch.setattr(fastrnn._C, "has_cuda_kernels", True)
    assert fastrnn_cuda_path() == "modules"


def test_flop_and_byte_models_on_a_known_case():
    # LSTM (G=4), 2 layers, bidirectional (D=2), T=10, B=3, I=6, H=8, proj_size P=5.
    case = Case("lstm", 10, 3, 6, 8, layers=2, bidirectional=True, proj_size=5)
    N, D, G, H, P = 30, 2, 4, 8, 5
    # per layer and direction: 2*N*(G*H*(I_l + P) + P*H), I_0 = 6, I_1 = D*P = 10
    forward = sum(D * 2 * N * (G * H * (i + P) + P * H) for i in (6, 10))
    assert flop_count(case, "inference") == forward == 2 * 2 * 30 * (32 * 11 + 40) + \
        2 * 2 * 30 * (32 * 15 + 40)
    assert flop_count(case, "train") == 3 * forward
    assert flop_count(case, "inference", rows=17) == forward * 17 / 30
    # bytes: per layer and direction, W_ih once, (W_hh + W_hr) T times, input read, output written
    elements = sum(D * (G * H * i + 10 * (G * H * P + H * P) + N * (i + P)) for i in (6, 10))
    assert elements == 2 * (192 + 10 * 200 + 30 * 11) + 2 * (320 + 10 * 200 + 30 * 15)
    assert bytes_moved(case, "inference", 4) == 4 * elements
    assert bytes_moved(case, "train", 2) == 3 * 2 * elements
    # without a projection the FLOP model is the CPU bench's, unchanged: G*H*(I_l + H)
    plain = Case("gru", 10, 3, 6, 8)
    assert flop_count(plain, "inference") == 2 * 30 * 3 * 8 * (6 + 8)
    assert bytes_moved(plain, "inference", 4) == 4 * (3 * 8 * 6 + 10 * 3 * 8 * 8 + 30 * (6 + 8))


def test_proj_size_cases_build_and_check_on_cpu():
    case = Case("lstm", 4, 2, 6, 8, proj_size=3)
    assert case.describe() == "lstm T=4 B=2 I=6 H=8 L=1 P=3"
    for bad in (dict(proj_size=8), dict(proj_size=3, cell="gru")):
        with pytest.raises(ValueError, match="proj_size is an LSTM's"):
            Case(**{**dict(cell="lstm", T=4, B=2, I=6, H=8), **bad})
    workload = make_workload(case, torch.float32, seed=0)
    assert workload.module.proj_size == 3 and workload.grad_h_n.shape == (1, 2, 3)
    config = BenchConfig(cases=(case,), impls=("torch", "fastrnn", "torch-native", "reference"))
    not_run = []
    runners, via = gpu_bench._runners(config, workload, not_run)
    assert not not_run and via["fastrnn"] == "kernels"
    checks = gpu_bench._checks(config, workload, runners, not_run)
    assert checks and all(c.ok for c in checks) and not not_run


def test_what_ran_is_read_from_the_profile():
    """torch.nn on CPU in float32 runs oneDNN (not so torch-native), fastrnn its op; a fastrnn
    that falls back to torch.nn (forced here: every dtype on the CPU is fastrnn's) is an error,
    not torch.nn's times under fastrnn's name."""
    workload = make_workload(Case("lstm", 3, 2, 4, 4), torch.float32, seed=0)
    ops = {impl: ops_run(RUNNERS[impl](workload), workload) for impl in IMPLS}
    assert FASTRNN_OP in ops["fastrnn"] and FASTRNN_OP not in ops["torch"]
    if torch.backends.mkldnn.is_available():
        assert "aten::mkldnn_rnn_layer" in ops["torch"]
        assert "aten::mkldnn_rnn_layer" not in ops["torch-native"]
    assert not any(CUDNN_OP in names for names in ops.values())
    assert gpu_bench._via("torch", ops["torch"]) == "ATen"
    with pytest.raises(RuntimeError, match="fastrnn did not run fastrnn::rnn"):
        gpu_bench._via("fastrnn", ops["torch"])
    half = make_workload(Case("gru", 3, 2, 4, 4), torch.bfloat16, seed=0)
    config = BenchConfig(cases=(half.case,), device="cuda", dtype="bfloat16")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastrnn.modules, "_unserved", lambda tensors: "forced by the test")
        with pytest.warns(UserWarning, match="runs torch.nn's implementation"), \
                pytest.raises(RuntimeError, match="refusing to report torch.nn's times"):
            gpu_bench._runners(config, half, [])


def test_an_op_that_refuses_a_case_is_listed_not_run():
    """fastrnn's op refusing a case (its error starts "fastrnn:") leaves it out of that case."""
    workload = make_workload(Case("rnn_tanh", 3, 2, 4, 4), torch.float32, seed=0)
    config = BenchConfig(cases=(workload.case,), impls=("torch", "fastrnn"))

    def refusing(w):
        def forward(x):
            raise TypeError("fastrnn: input must be float32 or float64, got BFloat16")
        return Runner(forward, {})
    not_run = []
    original = gpu_bench.IMPLS["fastrnn"]
    try:
        gpu_bench.IMPLS["fastrnn"] = refusing
        runners, via = gpu_bench._runners(config, workload, not_run)
    finally:
        gpu_bench.IMPLS["fastrnn"] = original
    assert list(runners) == ["torch"] and via == {"torch": "ATen"}
    assert [(n.impl, n.reason) for n in not_run] == [
        ("fastrnn", "fastrnn: input must be float32 or float64, got BFloat16")]


def test_half_parity_is_twice_the_baselines_error():
    """bfloat16: torch-native passes (its error against float32 torch.nn is torch.nn's); a
    runner off by 3% fails, and a failing runner is taken out of the timing."""
    workload = make_workload(Case("gru", 4, 3, 8, 8), torch.bfloat16, seed=0)
    exact = gpu_bench.upcast(workload)
    assert exact.input.dtype == torch.float32 and exact.module.weight_hh_l0.dtype == torch.float32
    assert torch.equal(exact.input, workload.input.float())
    good = RUNNERS["torch-native"](workload)

    def off(x):
        output, h_n = good.forward(x)
        return output * 1.03, h_n
    runners = {"torch": RUNNERS["torch"](workload), "torch-native": good,
               "off": Runner(off, good.params)}
    checks = check_parity_half(workload, "train", runners, "torch", exact, RUNNERS["torch"](exact))
    assert {c.tensor for c in checks} >= {"output", "h_n", "grad_input", "grad_weight_hh_l0"}
    assert all(c.ok for c in checks if c.impl == "torch-native")
    assert not next(c for c in checks if c.impl == "off" and c.tensor == "output").ok
    assert all(c.budget > 0 and "budget" in c.describe() for c in checks)

    config = BenchConfig(cases=(workload.case,), device="cuda", dtype="bfloat16",
                         modes=("inference",))
    not_run = []
    gpu_bench._checks(config, workload, runners, not_run)
    assert set(runners) == {"torch", "torch-native"}
    assert [(n.impl, n.dtype) for n in not_run] == [("off", "bfloat16")]


def test_gpu_table_rows_and_speedups_per_dtype():
    """The GPU path's timing and table, run on the CPU: a row per dtype, mode and impl, TFLOP/s
    and GB/s from the models at the median, speedups within the same dtype."""
    results = []
    for dtype in ("float32", "bfloat16"):
        config = BenchConfig(cases=(Case("lstm", 3, 2, 4, 6, proj_size=2),), device="cuda",
                             dtype=dtype, impls=("torch", "torch-native"), repeats=2, warmup=0,
                             block=1, settle_ms=0.0, rewarm_ms=0.0)
        workload = make_workload(config.cases[0], CUDA_DTYPES[dtype], seed=0)
        runners, via = gpu_bench._runners(config, workload, [])
        results += gpu_bench._time_case(config, workload, runners, via, None)
    add_speedups(results, "torch")
    assert len(results) == 2 * 2 * 2
    assert all(r.speedup == 1.0 for r in results if r.impl == "torch")
    for r in results:
        case = Case("lstm", 3, 2, 4, 6, proj_size=2)
        size = 4 if r.dtype == "float32" else 2
        assert r.gbyte * 1e9 == bytes_moved(case, r.mode, size)
        assert r.gbps == pytest.approx(r.gbyte / (r.median_ms / 1e3))
        assert r.gflop * 1e9 == flop_count(case, r.mode) and r.proj_size == 2
    table = gpu_bench.format_cuda_table(results).splitlines()
    assert table[0].split()[:10] == ["dtype", "cell", "TxBxIxH", "L", "D", "P", "input", "mode",
                                     "impl", "via"]
    rows = [line.split() for line in table[2:-1] if line.strip()]
    assert [(r[0], r[7], r[8]) for r in rows] == [
        (dtype, mode, impl) for dtype in ("float32", "bfloat16") for mode in ("inference", "train")
        for impl in ("torch", "torch-native")]
    assert all(r[5] == "2" for r in rows)


def test_gpu_header_names_the_tf32_setting_and_fastrnn_path(monkeypatch):
    configs = gpu_bench.GPU_PRESETS["gpu-quick"].configs()
    env = Environment.collect("cpu")
    env.gpu = "a GPU, 132 SMs, CUDA 13.0, cuDNN 91000"
    monkeypatch.setattr(fastrnn._C, "built_with_cuda", True)
    monkeypatch.setenv("FASTRNN_EXPERIMENTAL_CUDA", "1")
    with exact_fp32("cuda"):
        header = gpu_bench.format_cuda_header(configs, env, {})
    assert "  gpu       a GPU, 132 SMs, CUDA 13.0, cuDNN 91000" in header
    assert ("  tf32      off, pinned for the run: torch.backends.cuda.matmul.allow_tf32 = False, "
            "torch.backends.cudnn.allow_tf32 = False") in header
    assert "FASTRNN_EXPERIMENTAL_CUDA=1" in header and "fastrnn.functional.rnn_stack" in header
    assert "x float32, bfloat16" in header


def test_an_implementation_that_raises_loses_its_case_not_the_run():
    """An error other than fastrnn's op declining the case is listed with its type (and makes
    the run's status 1); a baseline that raises takes its whole case out."""
    workload = make_workload(Case("gru", 3, 2, 4, 4), torch.float32, seed=0)
    config = BenchConfig(cases=(workload.case,), impls=("torch", "torch-native"))

    def broken(w):
        def forward(x):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return Runner(forward, {})
    for impl, kept in (("torch-native", ["torch"]), ("torch", [])):
        original = gpu_bench.IMPLS[impl]
        not_run = []
        try:
            gpu_bench.IMPLS[impl] = broken
            runners, via = gpu_bench._runners(config, workload, not_run)
        finally:
            gpu_bench.IMPLS[impl] = original
        assert list(runners) == kept
        [entry] = not_run
        assert entry.impl == impl and entry.reason == (
            "RuntimeError: CUDA error: an illegal memory access was encountered")
        assert not gpu_bench.refused(entry.reason)
    assert gpu_bench.refused("fastrnn: input must be float32 or float64, got BFloat16")


def test_a_runner_whose_backward_raises_is_taken_out_of_the_timing():
    workload = make_workload(Case("rnn_tanh", 3, 2, 4, 4), torch.float32, seed=0)
    config = BenchConfig(cases=(workload.case,), impls=("torch", "torch-native", "reference"))
    good = RUNNERS["torch-native"](workload)

    class Fails(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("fastrnn: backward broke")

    def forward(x):
        output, h_n = good.forward(x)
        return Fails.apply(output), h_n
    runners = {"torch": RUNNERS["torch"](workload), "torch-native": Runner(forward, good.params),
               "reference": RUNNERS["reference"](workload)}
    not_run = []
    checks = gpu_bench._checks(config, workload, runners, not_run)
    assert set(runners) == {"torch", "reference"}
    assert [(n.impl, n.reason) for n in not_run] == [
        ("torch-native", "RuntimeError in the parity check: fastrnn: backward broke")]
    assert checks and all(c.ok and c.impl == "reference" for c in checks)


@pytest.mark.parametrize("case", [
    Case("lstm", 5, 3, 6, 8, layers=2, bidirectional=True, batch_first=True, packed="uniform",
         proj_size=3),
    Case("gru", 4, 2, 5, 6, packed="0.5"), Case("rnn_tanh", 3, 2, 4, 5, batch_first=True)])
def test_fastrnn_runner_of_cuda_runs_agree_on_cpu(case):
    """What the bench times as fastrnn on CUDA while the modules fall back there
    (fastrnn.functional.rnn_stack on the module's parameters), run on CPU tensors: it agrees
    with torch.nn, outputs and every gradient, padded or packed, batch-first, with a projection."""
    from fastrnn.bench import workloads
    workload = make_workload(case, torch.float32, seed=0)
    runners = {"torch": RUNNERS["torch"](workload),
               "fastrnn": workloads._stack_runner(fastrnn.functional.rnn_stack, workload)}
    assert FASTRNN_OP in ops_run(runners["fastrnn"], workload)
    for mode in ("inference", "train"):
        checks = check_parity(workload, mode, runners, "torch", "float32")
        assert checks and all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]
