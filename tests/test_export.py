"""Export and deployment of fastrnn modules: revert (convert's inverse, sharing the tensors),
ONNX export through both of torch's exporters checked against onnxruntime, TorchScript (script
raises and points to revert; trace records torch.nn's op), and torch.export (an eval() model
records an inference op)."""

import warnings

import numpy as np
import onnx  # onnx, onnxruntime (and onnxscript, the dynamo exporter's): the Makefile's test deps
import onnxruntime as ort
import pytest
import torch
from torch import nn

import fastrnn
from tolerances import assert_close


class Model(nn.Module):
    """A batch-first 2-layer bidirectional LSTM, a GRU over it and a GRUCell on its last step."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(10, 6)
        self.cell = nn.GRUCell(6, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        out, h_n = self.gru(out.transpose(0, 1))
        return self.cell(out[-1], h_n[0][:, :3])


def test_revert_is_converts_inverse_and_keeps_the_parameters():
    torch.manual_seed(0)
    model = Model()
    params = [id(p) for p in model.parameters()]
    _, converted = fastrnn.convert(model, return_replaced=True)
    assert converted == ["lstm", "gru", "cell"]
    assert [type(m) for m in (model.lstm, model.gru, model.cell)] == [
        fastrnn.LSTM, fastrnn.GRU, fastrnn.GRUCell]
    assert fastrnn.revert(model) is model
    assert [type(m) for m in (model.lstm, model.gru, model.cell)] == [nn.LSTM, nn.GRU, nn.GRUCell]
    assert [id(p) for p in model.parameters()] == params


def test_revert_not_in_place_shares_the_tensors():
    torch.manual_seed(0)
    model = fastrnn.convert(Model())
    copy_, reverted = fastrnn.revert(model, inplace=False, return_replaced=True)
    assert reverted == ["lstm", "gru", "cell"] and type(model.lstm) is fastrnn.LSTM
    assert type(copy_.lstm) is nn.LSTM and copy_.lstm is not model.lstm
    for (name, p), q in zip(model.named_parameters(), copy_.parameters()):
        assert p is q, name  # the same Parameter: trained weights are exported as they are
    x = torch.randn(3, 7, 4)
    assert_close(copy_(x), model(x), "output", "reverted copy")
    with torch.no_grad():
        model.lstm.weight_hh_l0.add_(1.0)  # a training step of one is one of the other
    assert_close(copy_(x), model(x), "output", "after an update")


def test_revert_leaves_other_modules_and_subclasses():
    class MyLSTM(nn.LSTM):
        pass
    model = nn.Sequential(MyLSTM(3, 4), nn.Linear(4, 2), nn.LSTM(3, 4))
    assert fastrnn.revert(model, return_replaced=True)[1] == []
    assert [type(m) for m in model] == [MyLSTM, nn.Linear, nn.LSTM]


def onnx_outputs(module, args, path, dynamo):
    """Export ``module`` with torch.onnx.export and run the file in onnxruntime: its outputs
    and the ONNX operator types of the graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' own deprecation and tracer warnings
        torch.onnx.export(module, args, str(path), dynamo=dynamo, verbose=False)
    graph = onnx.load(str(path)).graph
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = _flat(args)
    assert len(session.get_inputs()) == len(inputs)
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(np.asarray(o)) for o in session.run(None, feeds)], \
        {n.op_type for n in graph.node}


def _flat(outputs):
    flat = []
    for o in outputs if isinstance(outputs, tuple) else (outputs,):
        flat += _flat(o) if isinstance(o, tuple) else [o]
    return flat


ONNX_CASES = {
    # name: (module, args, the ONNX operator torch maps it to (None: an unrolled graph))
    "lstm_2_layers_bidirectional_batch_first": (
        lambda: fastrnn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True),
        lambda: (torch.randn(3, 6, 4), (torch.randn(4, 3, 5), torch.randn(4, 3, 5))), "LSTM"),
    "gru_no_bias": (lambda: fastrnn.GRU(4, 5, bias=False), lambda: (torch.randn(6, 3, 4),),
                    "GRU"),
    "rnn_relu_2_layers": (lambda: fastrnn.RNN(4, 5, num_layers=2, nonlinearity="relu"),
                          lambda: (torch.randn(6, 3, 4),), None),
    "lstm_cell": (lambda: fastrnn.LSTMCell(4, 5), lambda: (torch.randn(3, 4),), None),
}


# Every case through the default (dynamo) exporter; the deprecated TorchScript-based one, slower,
# on the LSTM and the RNN.
@pytest.mark.parametrize("case,dynamo", [(case, True) for case in ONNX_CASES] + [
    ("lstm_2_layers_bidirectional_batch_first", False), ("rnn_relu_2_layers", False)])
def test_onnx_export_matches_onnxruntime(case, dynamo, tmp_path):
    make, make_args, op = ONNX_CASES[case]
    torch.manual_seed(0)
    module, args = make().eval(), make_args()
    with torch.no_grad():
        expected = _flat(module(*args))  # fastrnn's kernels
    outputs, ops = onnx_outputs(module, args, tmp_path / "m.onnx", dynamo)
    if op is not None:
        assert op in ops, ops
    if case == "rnn_relu_2_layers" and not dynamo:
        assert "RNN" in ops
    assert len(outputs) == len(expected)
    for k, (value, want) in enumerate(zip(outputs, expected)):
        assert_close(value, want, "output", f"output {k}")


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_export_of_a_projection_points_to_revert(dynamo, tmp_path):
    module = fastrnn.LSTM(4, 6, proj_size=2).eval()
    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(5, 3, 4),), str(tmp_path / "m.onnx"),
                          dynamo=dynamo)
    text = str(info.value)
    assert ("fastrnn.LSTM with proj_size=2 cannot be exported to ONNX: ONNX's LSTM operator has "
            "no projection") in text and "fastrnn.revert(model)" in text


def test_torchscript_script_raises_and_points_to_revert():
    model = fastrnn.convert(Model())
    with pytest.raises(RuntimeError, match=r"fastrnn.LSTM cannot be compiled by torch.jit.script "
                                           r".*Script fastrnn.revert\(model\) instead"):
        torch.jit.script(model)
    scripted = torch.jit.script(fastrnn.revert(model, inplace=False))
    x = torch.randn(3, 7, 4)
    assert_close(scripted(x), model(x), "output", "scripted reverted model")


def test_torchscript_trace_records_torch_nns_op():
    torch.manual_seed(0)
    model = fastrnn.convert(Model()).eval()
    x = torch.randn(3, 7, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,))  # check_trace: a second trace must agree
    graph = str(traced.inlined_graph)
    assert "aten::lstm" in graph and "aten::gru" in graph and "fastrnn::" not in graph
    x2 = torch.randn(2, 9, 4)
    assert_close(traced(x2), model(x2), "output", "traced model")


def _op_training_flags(exported):
    return [node.args[-1] for node in exported.graph.nodes
            if node.target is torch.ops.fastrnn.rnn.default]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_torch_export_records_inference_for_an_eval_model(train):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(4, 5, num_layers=2).train(train)
    x = torch.randn(6, 3, 4)
    exported = torch.export.export(lstm, (x,))
    assert _op_training_flags(exported) == [train]
    out, (h_n, c_n) = exported.module()(x)
    want, (want_h, want_c) = lstm(x)
    for value, expected, what in ((out, want, "output"), (h_n, want_h, "h_n"),
                                  (c_n, want_c, "c_n")):
        assert_close(value, expected, "output", what)
    if not train:  # an inference graph: a backward through it says why it cannot run
        with pytest.raises(RuntimeError, match="forward that ran with training=False"):
            exported.module()(x)[0].sum().backward()
