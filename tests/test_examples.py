"""The scripts in examples/ run as scripts (tiny settings), so they cannot rot."""

import math
import re
import runpy
import sys
from pathlib import Path

import pytest

import fastrnn

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_script(name, args, monkeypatch, capsys):
    """examples/<name> as `python examples/<name> *args` would run it (its folder first on
    sys.path, for examples/progress.py); returns its stdout."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def losses(out):
    return [float(v) for v in re.findall(r"loss (\d+\.\d+)", out)]


def test_char_lm_default_text(monkeypatch, capsys):
    """On the Zen of Python (the default text) the loss goes down; a sample follows."""
    out = run_script("char_lm.py", ["--steps", "40", "--hidden-size", "32", "--seq-len", "16",
                                    "--batch-size", "8", "--log-every", "10",
                                    "--sample-length", "30"], monkeypatch, capsys)
    assert "fastrnn.LSTM hidden 32" in out
    logged = losses(out)
    assert len(logged) == 4 and logged[-1] < logged[0], out
    sample = out.split("sample:\n", 1)[1]
    assert sample.startswith("The Zen ") and len(sample.rstrip("\n")) == 8 + 30


def test_char_lm_text_file(tmp_path, monkeypatch, capsys):
    text = tmp_path / "text.txt"
    text.write_text("hello world, hello fastrnn. " * 20, encoding="utf-8")
    out = run_script("char_lm.py", ["--text", str(text), "--steps", "3", "--hidden-size", "8",
                                    "--num-layers", "2", "--dropout", "0.1", "--seq-len", "8",
                                    "--batch-size", "2", "--log-every", "1",
                                    "--sample-length", "5"], monkeypatch, capsys)
    assert "15 distinct" in out and len(losses(out)) == 3
    assert out.split("sample:\n", 1)[1].startswith("hello wo")


def test_char_lm_clip_norm_flag(monkeypatch, capsys):
    """--clip-norm (alias --clip) sets the max norm; 0 trains without clipping."""
    for flag in ("--clip-norm", "--clip"):
        out = run_script("char_lm.py", ["--steps", "2", "--hidden-size", "8", "--seq-len", "8",
                                        "--batch-size", "2", "--log-every", "1", flag, "0",
                                        "--sample-length", "3"], monkeypatch, capsys)
        assert len(losses(out)) == 2


@pytest.mark.parametrize("flags,shown", [
    (["--grad-clip", "0.05", "--cell-clip", "2"], "clipping: clip_grad_norm_ 1, grad_clip 0.05, "
                                                  "cell_clip 2"),
    (["--clip-norm", "0", "--grad-clip", "0.05"], "clipping: grad_clip 0.05"),
    (["--clip-norm", "0"], "clipping: none")])
def test_char_lm_in_kernel_clipping_flags(flags, shown, monkeypatch, capsys):
    """--grad-clip and --cell-clip reach the fastrnn.LSTM, alone or with --clip-norm."""
    built = []
    monkeypatch.setattr(fastrnn.LSTM, "__init__", recording_init(fastrnn.LSTM.__init__, built))
    out = run_script("char_lm.py", ["--steps", "2", "--hidden-size", "8", "--seq-len", "8",
                                    "--batch-size", "2", "--log-every", "1", "--sample-length",
                                    "3", *flags], monkeypatch, capsys)
    assert shown in out and len(losses(out)) == 2 and all(map(math.isfinite, losses(out)))
    expected = {"grad_clip": 0.05 if "--grad-clip" in flags else None,
                "cell_clip": 2.0 if "--cell-clip" in flags else None}
    assert [{k: getattr(m, k) for k in expected} for m in built] == [expected]


def test_char_lm_rejects_negative_clip(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_script("char_lm.py", ["--cell-clip", "-1"], monkeypatch, capsys)
    assert "--cell-clip must be >= 0" in capsys.readouterr().err


def recording_init(init, built):
    """A module __init__ that runs ``init`` and appends the module to ``built``."""
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self)
    return wrapped


def test_adding_problem(tmp_path, monkeypatch, capsys):
    """Every model, unclipped and clipped, gets a finite test MSE printed beside the baseline;
    the plot is written."""
    pytest.importorskip("matplotlib")
    plot = tmp_path / "adding.png"
    out = run_script("adding_problem.py", ["--seq-len", "12", "--steps", "25", "--batch-size",
                                           "8", "--hidden-size", "8", "--test-size", "64",
                                           "--grad-clip", "0.5", "--plot", str(plot)],
                     monkeypatch, capsys)
    assert "baseline (predict 1): 0.167" in out and "clip_grad_norm_ 0.5" in out
    for model in ("RNN tanh", "IRNN", "LSTM", "GRU"):
        row = re.search(rf"^{model} +(\S+) +(\S+)$", out, re.MULTILINE)
        assert row, out
        assert all(0 < float(mse) < 10 for mse in row.groups()), row.group(0)
    assert plot.stat().st_size > 0


def test_adding_problem_in_kernel_clip(monkeypatch, capsys):
    """--in-kernel-clip adds a column of runs whose modules have grad_clip set (and only those)."""
    built = []
    monkeypatch.setattr(fastrnn.GRU, "__init__", recording_init(fastrnn.GRU.__init__, built))
    out = run_script("adding_problem.py", ["--seq-len", "8", "--steps", "4", "--batch-size", "4",
                                           "--hidden-size", "4", "--test-size", "16",
                                           "--models", "gru", "--in-kernel-clip", "0.02"],
                     monkeypatch, capsys)
    header = re.search(r"^model +(.*)$", out, re.MULTILINE).group(1)
    assert re.split(r" {2,}", header.strip()) == ["no clipping", "clip_grad_norm_ 1",
                                                  "grad_clip 0.02"]
    row = re.search(r"^GRU +(\S+) +(\S+) +(\S+)$", out, re.MULTILINE)
    assert row and all(0 < float(mse) < 10 for mse in row.groups()), out
    assert [m.grad_clip for m in built] == [None, None, 0.02]


def test_vanishing_gradients(tmp_path, monkeypatch, capsys):
    """A row of finite, non-negative norms per run at distances 0, 1, 10 and T-1; the IRNN's
    gradient (W_hh = I) keeps its size far better than the tanh RNN's; clipping in the kernel
    leaves the norm at distance 0 (before any step's backward) as it is; the plot is written."""
    pytest.importorskip("matplotlib")
    plot = tmp_path / "flow.png"
    out = run_script("vanishing_gradients.py", ["--seq-len", "40", "--batches", "2",
                                                "--batch-size", "4", "--hidden-size", "8",
                                                "--grad-clip", "0.001", "--plot", str(plot)],
                     monkeypatch, capsys)
    assert re.search(r"^distance from the loss +0 +1 +10 +39$", out, re.MULTILINE), out
    rows = {}
    for label in ("RNN tanh", "IRNN", "LSTM", "GRU"):
        for clipped in ("", ", grad_clip 0.001"):
            row = re.search(rf"^{label}{clipped} +(\S+) +(\S+) +(\S+) +(\S+)$", out,
                            re.MULTILINE)
            assert row, out
            rows[label + clipped] = [0.0 if v.startswith("<") else float(v)
                                     for v in row.groups()]
    assert all(math.isfinite(v) and v >= 0 for values in rows.values() for v in values)
    assert rows["IRNN"][-1] / rows["IRNN"][0] > 100 * rows["RNN tanh"][-1] / rows["RNN tanh"][0]
    for label in ("RNN tanh", "IRNN", "LSTM", "GRU"):
        assert rows[label][0] == rows[label + ", grad_clip 0.001"][0] > 0
    assert plot.stat().st_size > 0 and f"plot written to {plot}" in out


def test_vanishing_gradients_options(monkeypatch, capsys):
    """--grad-clip 0: unclipped runs only; --plot '': no plot; bad arguments exit."""
    out = run_script("vanishing_gradients.py", ["--seq-len", "3", "--batches", "1",
                                                "--batch-size", "2", "--hidden-size", "3",
                                                "--grad-clip", "0", "--models", "lstm",
                                                "--plot", ""], monkeypatch, capsys)
    assert re.search(r"^distance from the loss +0 +1 +2$", out, re.MULTILINE), out
    assert re.search(r"^LSTM +\S+ +\S+ +\S+$", out, re.MULTILINE)
    assert "grad_clip" not in out and "plot written" not in out
    for bad in (["--models", "rnn,transformer"], ["--batches", "0"], ["--grad-clip", "-1"]):
        with pytest.raises(SystemExit):
            run_script("vanishing_gradients.py", bad, monkeypatch, capsys)


def test_adding_problem_without_clipping_and_bad_model(monkeypatch, capsys):
    out = run_script("adding_problem.py", ["--seq-len", "6", "--steps", "3", "--batch-size",
                                           "4", "--hidden-size", "4", "--test-size", "8",
                                           "--grad-clip", "0", "--models", "irnn"],
                     monkeypatch, capsys)
    assert re.search(r"^IRNN +\S+$", out, re.MULTILINE) and "clip_grad_norm_" not in out
    with pytest.raises(SystemExit):
        run_script("adding_problem.py", ["--models", "lstm,transformer"], monkeypatch, capsys)


def test_seq2seq_reverse(monkeypatch, capsys):
    """One accuracy row per schedule, each accuracy a fraction."""
    out = run_script("seq2seq_reverse.py", ["--length", "3", "--steps", "6", "--batch-size", "4",
                                            "--hidden-size", "8", "--embedding-size", "4",
                                            "--test-size", "16"], monkeypatch, capsys)
    for name in ("teacher", "free", "linear", "exponential", "sigmoid"):
        row = re.search(rf"^{name} +(\d\.\d+) +(\d\.\d+) ", out, re.MULTILINE)
        assert row, out
        exact, digits = map(float, row.groups())
        assert 0 <= exact <= digits <= 1


def test_convert_model(monkeypatch, capsys):
    out = run_script("convert_model.py", [], monkeypatch, capsys)
    assert "'encoder': 'fastrnn.modules.LSTM'" in out
    assert "'summary': 'fastrnn.modules.GRUCell'" in out
    difference = float(re.search(r"logits: (\S+)", out).group(1))
    assert difference < 1e-5
    logged = losses(out)
    assert len(logged) == 5 and logged[-1] < logged[0]


@pytest.mark.parametrize("name", ["char_lm.py", "convert_model.py", "adding_problem.py",
                                  "seq2seq_reverse.py", "vanishing_gradients.py"])
def test_examples_have_a_docstring_with_usage(name):
    source = (EXAMPLES / name).read_text()
    assert source.startswith('"""') and f"python examples/{name}" in source
