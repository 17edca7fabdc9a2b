"""The public surface: docstrings on every public name, what print(model) and convert say about
what runs, and the fallback warnings (their wording, and that they point at the caller's line)."""

import inspect
import re
import warnings

import pytest
import torch
from torch import nn

import fastrnn
import fastrnn.emulation
import fastrnn.functional
import fastrnn.init
import fastrnn.modules
import fastrnn.plot
import fastrnn.reference
import fastrnn.seq2seq

PUBLIC_MODULES = (fastrnn, fastrnn.functional, fastrnn.modules, fastrnn.reference, fastrnn.plot,
                  fastrnn.emulation, fastrnn.init, fastrnn.seq2seq)


def public_names():
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_module_and_name_has_a_docstring(module):
    assert module.__doc__ and len(module.__doc__.split()) > 20, module.__name__
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__ and len(obj.__doc__.split()) >= 5, f"{module.__name__}.{name}"


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_functional_docstrings_give_shapes_dtypes_none_and_an_example(name):
    doc = inspect.getdoc(getattr(fastrnn.functional, name))
    for words in ("[T, B, I]", "[B, H]", "None", "float32", "float64", "Returns", "Example::",
                  f"fastrnn.functional.{name}("):
        assert words in doc, (name, words)


def test_no_docstring_points_to_an_unnamed_or_missing_place():
    """An installed package has no docs/ folder, and "the module docstring" names no module."""
    for qualname, obj in public_names():
        doc = obj.__doc__
        assert "see the module doc" not in doc, qualname
        for path in re.findall(r"docs/[\w.-]+", doc):
            assert "source repository" in doc, (qualname, path)
    assert "help(fastrnn.modules)" in fastrnn.LSTM.__doc__
    assert "CPU only" in fastrnn.__doc__
    assert "always false" in fastrnn.cuda_available.__doc__.lower()


@pytest.mark.parametrize("cls,args,kwargs", [
    ("LSTM", (10, 20), {"num_layers": 2, "batch_first": True, "proj_size": 5}),
    ("GRU", (3, 4), {"bidirectional": True}), ("RNN", (3, 4), {"nonlinearity": "relu"}),
    ("LSTMCell", (3, 4), {}), ("GRUCell", (3, 4), {"bias": False}), ("RNNCell", (3, 4), {}),
])
def test_repr_names_fastrnn(cls, args, kwargs):
    """torch.nn's repr, with the class name fastrnn.<name>, so print(model) shows what runs."""
    assert repr(getattr(fastrnn, cls)(*args, **kwargs)) == \
        "fastrnn." + repr(getattr(torch.nn, cls)(*args, **kwargs))


def test_print_of_a_converted_model_and_what_convert_replaced():
    model = nn.Sequential(nn.LSTM(3, 4), nn.Sequential(nn.Linear(4, 4), nn.GRUCell(4, 4)))
    converted, replaced = fastrnn.convert(model, return_replaced=True)
    assert converted is model and replaced == ["0", "1.1"]
    text = str(model)
    assert "(0): fastrnn.LSTM(3, 4)" in text and "(1): fastrnn.GRUCell(4, 4)" in text
    assert fastrnn.convert(model, return_replaced=True)[1] == []  # nothing left to convert
    assert fastrnn.convert(nn.LSTM(3, 4), return_replaced=True)[1] == [""]  # the model itself


def fallback_warning(call):
    with pytest.warns(UserWarning) as record:
        call()
    [warning] = [w for w in record if "runs torch.nn's implementation" in str(w.message)]
    return warning


@pytest.mark.parametrize("cls,shape", [("LSTM", (5, 2, 3)), ("GRUCell", (2, 3))])
def test_fallback_warning_points_at_the_callers_line(cls, shape):
    module = getattr(fastrnn, cls)(3, 4).to("meta")
    module.register_forward_pre_hook(lambda m, args: None)  # hooks add frames in torch.nn
    warning = fallback_warning(lambda: module(torch.randn(*shape, device="meta")))
    assert str(warning.message) == (f"fastrnn.{cls} runs torch.nn's implementation for this "
                                    f"call (device meta; fastrnn runs on the CPU only)")
    assert warning.filename == __file__


def test_fallback_on_another_device_says_cpu_only():
    lstm = fastrnn.LSTM(3, 4).to("meta")
    warning = fallback_warning(lambda: lstm(torch.randn(5, 2, 3, device="meta")))
    assert str(warning.message).endswith("(device meta; fastrnn runs on the CPU only)")
    assert warning.filename == __file__


def test_cuda_is_unserved_and_says_why():
    """Without a GPU nothing runs on CUDA here; the reason the modules give, whatever the
    machine, while fastrnn has no CUDA kernels."""
    assert not fastrnn.cuda_available()
    assert fastrnn.modules._unserved_device(torch.device("cuda", 0)) == (
        "device cuda:0; fastrnn has no CUDA kernels enabled yet: it runs on the CPU only")


def test_whole_model_loads_with_weights_only_under_safe_globals(tmp_path):
    """The README's recipe: torch.load(weights_only=True) of a pickled model holding fastrnn
    modules needs their classes allowed, as any module class's."""
    torch.manual_seed(0)
    model = nn.Sequential(fastrnn.LSTM(3, 4, num_layers=2), fastrnn.GRUCell(4, 4))
    torch.save(model, tmp_path / "model.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "model.pt", weights_only=True)
    with torch.serialization.safe_globals([nn.Sequential, fastrnn.LSTM, fastrnn.GRUCell]):
        loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert [type(m) for m in loaded] == [fastrnn.LSTM, fastrnn.GRUCell]
    x = torch.randn(5, 2, 3)
    assert torch.equal(loaded[0](x)[0], model[0](x)[0])
