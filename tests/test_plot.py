"""fastrnn.plot: the gradient-flow figure from the norms the modules record, its checks, and the
message when matplotlib is missing."""

import sys

import pytest
import torch

import fastrnn


def recorded_norms(T=12):
    """||dL/dh_t|| [T] of a GRU whose loss reads the last step only."""
    torch.manual_seed(0)
    gru = fastrnn.GRU(3, 5, record_grad_norms=True)
    output, _ = gru(torch.randn(T, 2, 3))
    output[-1].square().sum().backward()
    return gru.grad_norms[0]


def test_plots_recorded_norms(tmp_path):
    pytest.importorskip("matplotlib")
    norms = recorded_norms()
    underflowed = torch.cat([torch.zeros(3), torch.full((5,), 1e-40), torch.ones(2)])
    path = tmp_path / "sub" / "flow.png"
    fig = fastrnn.plot.grad_norms({"GRU": norms, "list": [0.5, 0.25, 1.0], "gaps": underflowed},
                                  path, title="flow", styles={"list": {"linestyle": "--"}})
    assert path.read_bytes().startswith(b"\x89PNG")
    ax, = fig.axes
    assert ax.get_yscale() == "log" and ax.get_title() == "flow"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["GRU", "list", "gaps"] and lines["list"].get_linestyle() == "--"
    # step t is drawn at distance T-1-t: the last step (the loss's) at 0
    x, y = lines["GRU"].get_data()
    assert list(x) == list(range(11, -1, -1))
    torch.testing.assert_close(torch.as_tensor(y), norms.double())
    # below float32's smallest normal number: not drawn
    y = torch.as_tensor(lines["gaps"].get_data()[1])
    assert y[:8].isnan().all() and (y[8:] == 1).all()


def test_without_path_writes_nothing(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    fig = fastrnn.plot.grad_norms({"a": torch.tensor([1.0, 0.1])})
    assert len(fig.axes[0].get_lines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("norms_by_label,styles,match", [
    ({}, None, "nothing to plot"),
    ({"a": torch.ones(2, 3)}, None, "'a' must be one value per time step.*shape \\(2, 3\\)"),
    ({"a": []}, None, "'a' must be one value per time step"),
    ({"a": [1.0, -0.5]}, None, "'a' have negative values"),
    ({"a": [1.0]}, {"b": {"color": "C0"}}, "styles for labels that are not plotted: 'b'"),
])
def test_bad_arguments(norms_by_label, styles, match):
    with pytest.raises(ValueError, match=match):
        fastrnn.plot.grad_norms(norms_by_label, styles=styles)


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    for name in [m for m in sys.modules if m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        fastrnn.plot.grad_norms({"a": [1.0, 0.5]}, "unused.png")
