"""The scripts in examples/ run as scripts (tiny settings), so they cannot rot."""

import re
import runpy
import sys
from pathlib import Path

import pytest

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
                                  "seq2seq_reverse.py"])
def test_examples_have_a_docstring_with_usage(name):
    source = (EXAMPLES / name).read_text()
    assert source.startswith('"""') and f"python examples/{name}" in source
