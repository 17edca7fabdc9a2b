// The torch glue: argument checks, allocation, dtype and device dispatch, op registration and the
// pybind11 module. The kernels behind it see only the params structs of params.h.
//
// Ops (namespace fastrnn; mode is one of "lstm", "gru", "rnn_tanh", "rnn_relu"):
//   forward(mode, input, h0?, c0?, weight_ih, weight_hh, bias_ih?, bias_hh?, training)
//       -> (output [T,B,H], h_n [B,H], c_n [B,H] (LSTM) or [0], saved [T,B,S*H] or [0])
//   backward(mode, grad_output?, grad_h_n?, grad_c_n?, input, h0?, c0?, weight_ih, weight_hh,
//            has_bias, output, saved)
//       -> (grad_input, grad_h0, grad_c0 ([0] unless LSTM), grad_weight_ih, grad_weight_hh,
//           grad_bias_ih, grad_bias_hh ([0] without bias))
// `saved` holds what backward needs and is filled only when training (and S > 0).
#include <torch/extension.h>
#include <torch/library.h>

#include <climits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cells/cells.h"
#include "cpu/blas.h"
#include "cpu/rnn_cpu.h"
#include "params.h"

namespace fastrnn {
namespace {

using OptTensor = std::optional<at::Tensor>;

struct CellShape {
  CellKind kind;
  int64_t gates;  // G
  int64_t saved;  // S
};

CellShape cell_shape(const std::string& mode) {
  const auto shape_of = [](CellKind kind) {
    return visit_cell(kind, [&](auto cell) {
      using Cell = decltype(cell);
      return CellShape{kind, Cell::kGates, Cell::kSaved};
    });
  };
  if (mode == "lstm") return shape_of(CellKind::kLstm);
  if (mode == "gru") return shape_of(CellKind::kGru);
  if (mode == "rnn_tanh") return shape_of(CellKind::kRnnTanh);
  if (mode == "rnn_relu") return shape_of(CellKind::kRnnRelu);
  TORCH_CHECK_VALUE(false, "fastrnn: mode must be one of 'lstm', 'gru', 'rnn_tanh', 'rnn_relu', got '",
                    mode, "'");
}

// The sizes of one call, read from input and weight_hh and checked against everything else.
struct Sizes {
  int64_t T, B, I, H, G;
};

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& input,
                  at::IntArrayRef expected_shape) {
  TORCH_CHECK(t.device() == input.device(), "fastrnn: ", name, " is on ", t.device(),
              " but input is on ", input.device(), ": all tensors must be on one device");
  TORCH_CHECK_TYPE(t.scalar_type() == input.scalar_type(), "fastrnn: ", name, " has dtype ",
                   t.scalar_type(), " but input has dtype ", input.scalar_type(),
                   ": all tensors must have one dtype");
  TORCH_CHECK_VALUE(t.sizes() == expected_shape, "fastrnn: ", name, " must have shape ",
                    expected_shape, ", got ", t.sizes());
}

Sizes check_inputs(const CellShape& cell, const std::string& mode, const at::Tensor& input,
                   const OptTensor& h0, const OptTensor& c0, const at::Tensor& weight_ih,
                   const at::Tensor& weight_hh, const OptTensor& bias_ih,
                   const OptTensor& bias_hh) {
  TORCH_CHECK_VALUE(input.dim() == 3, "fastrnn: input must be 3-D [T, B, I], got ", input.dim(),
                    "-D with shape ", input.sizes());
  TORCH_CHECK_TYPE(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
                   "fastrnn: input must be float32 or float64, got ", input.scalar_type());
  TORCH_CHECK_VALUE(weight_hh.dim() == 2, "fastrnn: weight_hh must be 2-D [G*H, H], got shape ",
                    weight_hh.sizes());
  const Sizes s{input.size(0), input.size(1), input.size(2), weight_hh.size(1), cell.gates};
  TORCH_CHECK_VALUE(s.T >= 1, "fastrnn: input must have at least one time step (T >= 1), got T = ",
                    s.T);
  TORCH_CHECK_VALUE(s.B >= 1 && s.I >= 1 && s.H >= 1,
                    "fastrnn: batch, input and hidden sizes must be >= 1, got B = ", s.B,
                    ", I = ", s.I, ", H = ", s.H);
  const int64_t GH = s.G * s.H;
  // the BLAS indexes with 32-bit integers
  TORCH_CHECK_VALUE(s.T * s.B <= INT_MAX && GH * std::max(s.I, s.H) <= INT_MAX &&
                        s.B * GH <= INT_MAX,
                    "fastrnn: sizes T = ", s.T, ", B = ", s.B, ", I = ", s.I, ", H = ", s.H,
                    " exceed the 32-bit index range of the BLAS");
  check_tensor(weight_hh, "weight_hh", input, {GH, s.H});
  TORCH_CHECK_VALUE(weight_ih.dim() == 2 && weight_ih.size(0) == GH,
                    "fastrnn: weight_ih must have shape [G*H, I] = [", GH, ", ", s.I,
                    "] for mode '", mode, "' with H = ", s.H, ", got ", weight_ih.sizes());
  TORCH_CHECK_VALUE(weight_ih.size(1) == s.I, "fastrnn: input has I = ", s.I,
                    " features but weight_ih expects ", weight_ih.size(1));
  check_tensor(weight_ih, "weight_ih", input, {GH, s.I});
  TORCH_CHECK_VALUE(bias_ih.has_value() == bias_hh.has_value(),
                    "fastrnn: give both bias_ih and bias_hh or neither");
  if (bias_ih) check_tensor(*bias_ih, "bias_ih", input, {GH});
  if (bias_hh) check_tensor(*bias_hh, "bias_hh", input, {GH});
  if (h0) check_tensor(*h0, "h0", input, {s.B, s.H});
  if (cell.kind == CellKind::kLstm) {
    if (c0) check_tensor(*c0, "c0", input, {s.B, s.H});
  } else {
    TORCH_CHECK_VALUE(!c0, "fastrnn: c0 is only for mode 'lstm', not '", mode, "'");
  }
  return s;
}

// The input as the GEMMs read it: unit stride along I, rows [B, I] with a leading dimension
// >= I; x[t] may start anywhere. Sliced views pass without a copy; anything else is copied.
struct GemmInput {
  at::Tensor x;
  int64_t stride_t, stride_b;
};

GemmInput gemm_input(const at::Tensor& input) {
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t stride_b = B == 1 ? I : input.stride(1);
  const bool ok = (I == 1 || input.stride(2) == 1) && stride_b >= I;
  if (!ok) return gemm_input(input.contiguous());
  const int64_t stride_t = T == 1 ? B * stride_b : input.stride(0);
  return {input, stride_t, stride_b};
}

at::Tensor zeros_if_absent(const OptTensor& t, const at::Tensor& like, int64_t B, int64_t H) {
  return t ? t->contiguous() : at::zeros({B, H}, like.options());
}

at::Tensor empty0(const at::Tensor& like) { return at::empty({0}, like.options()); }

// What forward and backward both read, laid out as the kernels want it: the input as the GEMMs
// read it, initial states materialised (zeros when absent; c0 empty unless LSTM), weights
// contiguous.
struct LayerInputs {
  GemmInput x;
  at::Tensor h0, c0, w_ih, w_hh;

  LayerInputs(const CellShape& cell, const Sizes& s, const at::Tensor& input, const OptTensor& h0_,
              const OptTensor& c0_, const at::Tensor& weight_ih, const at::Tensor& weight_hh)
      : x(gemm_input(input)),
        h0(zeros_if_absent(h0_, input, s.B, s.H)),
        c0(cell.kind == CellKind::kLstm ? zeros_if_absent(c0_, input, s.B, s.H) : empty0(input)),
        w_ih(weight_ih.contiguous()),
        w_hh(weight_hh.contiguous()) {}

  // Sets the fields ForwardParams and BackwardParams share.
  template <typename scalar_t, class Params>
  void fill(Params& p, const Sizes& s) const {
    p.T = s.T, p.B = s.B, p.I = s.I, p.H = s.H;
    p.x = x.x.const_data_ptr<scalar_t>();
    p.x_stride_t = x.stride_t, p.x_stride_b = x.stride_b;
    p.h0 = h0.const_data_ptr<scalar_t>();
    p.c0 = c0.numel() ? c0.const_data_ptr<scalar_t>() : nullptr;
    p.w_ih = w_ih.const_data_ptr<scalar_t>();
    p.w_hh = w_hh.const_data_ptr<scalar_t>();
  }
};

void check_cpu(const at::Tensor& input) {
  if (input.is_cpu()) return;
#ifdef FASTRNN_WITH_CUDA
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              " yet; this build has CPU kernels and the CUDA build plumbing");
#else
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              "; this build of fastrnn has CPU kernels only");
#endif
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.numel() ? t.const_data_ptr<scalar_t>() : nullptr;
}

template <typename scalar_t>
scalar_t* mutable_ptr_or_null(at::Tensor& t) {
  return t.numel() ? t.mutable_data_ptr<scalar_t>() : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const std::string& mode, const at::Tensor& input, const OptTensor& h0, const OptTensor& c0,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const OptTensor& bias_ih,
    const OptTensor& bias_hh, bool training) {
  const CellShape cell = cell_shape(mode);
  const Sizes s = check_inputs(cell, mode, input, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh);
  check_cpu(input);
  const bool lstm = cell.kind == CellKind::kLstm;

  const LayerInputs in(cell, s, input, h0, c0, weight_ih, weight_hh);
  const at::Tensor b_ih = bias_ih ? bias_ih->contiguous() : empty0(input);
  const at::Tensor b_hh = bias_hh ? bias_hh->contiguous() : empty0(input);

  at::Tensor output = at::empty({s.T, s.B, s.H}, input.options());
  at::Tensor h_n = at::empty({s.B, s.H}, input.options());
  at::Tensor c_n = lstm ? at::empty({s.B, s.H}, input.options()) : empty0(input);
  at::Tensor saved = training && cell.saved > 0
                         ? at::empty({s.T, s.B, cell.saved * s.H}, input.options())
                         : empty0(input);

  cpu::set_blas_threads(at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fastrnn::forward", [&] {
    ForwardParams<scalar_t> p;
    in.fill<scalar_t>(p, s);
    p.b_ih = ptr_or_null<scalar_t>(b_ih);
    p.b_hh = ptr_or_null<scalar_t>(b_hh);
    p.output = output.mutable_data_ptr<scalar_t>();
    p.h_n = h_n.mutable_data_ptr<scalar_t>();
    p.c_n = mutable_ptr_or_null<scalar_t>(c_n);
    p.saved = mutable_ptr_or_null<scalar_t>(saved);
    cpu::rnn_forward(cell.kind, p);
  });
  return {output, h_n, c_n, saved};
}

// Contiguous gradient of the given shape, or an undefined tensor for an absent (zero) one.
at::Tensor grad_or_undefined(const OptTensor& g, const char* name, const at::Tensor& input,
                             at::IntArrayRef shape) {
  if (!g) return {};
  check_tensor(*g, name, input, shape);
  return g->contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
backward(const std::string& mode, const OptTensor& grad_output, const OptTensor& grad_h_n,
         const OptTensor& grad_c_n, const at::Tensor& input, const OptTensor& h0,
         const OptTensor& c0, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
         bool has_bias, const at::Tensor& output, const at::Tensor& saved) {
  const CellShape cell = cell_shape(mode);
  const Sizes s = check_inputs(cell, mode, input, h0, c0, weight_ih, weight_hh, {}, {});
  check_cpu(input);
  const bool lstm = cell.kind == CellKind::kLstm;
  check_tensor(output, "output", input, {s.T, s.B, s.H});
  if (cell.saved > 0) {
    TORCH_CHECK_VALUE(saved.numel() > 0,
                      "fastrnn: backward needs the tensors saved by a forward with training=True");
    check_tensor(saved, "saved", input, {s.T, s.B, cell.saved * s.H});
  }
  const at::Tensor g_out = grad_or_undefined(grad_output, "grad_output", input, {s.T, s.B, s.H});
  const at::Tensor g_hn = grad_or_undefined(grad_h_n, "grad_h_n", input, {s.B, s.H});
  const at::Tensor g_cn =
      lstm ? grad_or_undefined(grad_c_n, "grad_c_n", input, {s.B, s.H}) : at::Tensor();

  const LayerInputs in(cell, s, input, h0, c0, weight_ih, weight_hh);
  const at::Tensor out = output.contiguous(), sv = saved.contiguous();

  const int64_t GH = s.G * s.H;
  at::Tensor grad_input = at::empty({s.T, s.B, s.I}, input.options());
  at::Tensor grad_h0 = at::empty({s.B, s.H}, input.options());
  at::Tensor grad_c0 = lstm ? at::empty({s.B, s.H}, input.options()) : empty0(input);
  at::Tensor grad_w_ih = at::empty({GH, s.I}, input.options());
  at::Tensor grad_w_hh = at::empty({GH, s.H}, input.options());
  at::Tensor grad_b_ih = has_bias ? at::empty({GH}, input.options()) : empty0(input);
  at::Tensor grad_b_hh = has_bias ? at::empty({GH}, input.options()) : empty0(input);

  cpu::set_blas_threads(at::get_num_threads());
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fastrnn::backward", [&] {
    BackwardParams<scalar_t> p;
    in.fill<scalar_t>(p, s);
    p.output = out.const_data_ptr<scalar_t>();
    p.saved = ptr_or_null<scalar_t>(sv);
    p.grad_output = g_out.defined() ? g_out.const_data_ptr<scalar_t>() : nullptr;
    p.grad_h_n = g_hn.defined() ? g_hn.const_data_ptr<scalar_t>() : nullptr;
    p.grad_c_n = g_cn.defined() ? g_cn.const_data_ptr<scalar_t>() : nullptr;
    p.grad_x = grad_input.mutable_data_ptr<scalar_t>();
    p.grad_h0 = grad_h0.mutable_data_ptr<scalar_t>();
    p.grad_c0 = mutable_ptr_or_null<scalar_t>(grad_c0);
    p.grad_w_ih = grad_w_ih.mutable_data_ptr<scalar_t>();
    p.grad_w_hh = grad_w_hh.mutable_data_ptr<scalar_t>();
    p.grad_b_ih = mutable_ptr_or_null<scalar_t>(grad_b_ih);
    p.grad_b_hh = mutable_ptr_or_null<scalar_t>(grad_b_hh);
    cpu::rnn_backward(cell.kind, p);
  });
  return {grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY(fastrnn, m) {
  m.def(
      "forward(str mode, Tensor input, Tensor? h0, Tensor? c0, Tensor weight_ih, "
      "Tensor weight_hh, Tensor? bias_ih, Tensor? bias_hh, bool training) "
      "-> (Tensor output, Tensor h_n, Tensor c_n, Tensor saved)");
  m.def(
      "backward(str mode, Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, Tensor input, "
      "Tensor? h0, Tensor? c0, Tensor weight_ih, Tensor weight_hh, bool has_bias, Tensor output, "
      "Tensor saved) -> (Tensor grad_input, Tensor grad_h0, Tensor grad_c0, "
      "Tensor grad_weight_ih, Tensor grad_weight_hh, Tensor grad_bias_ih, Tensor grad_bias_hh)");
}

// CUDA tensors reach the same entry points, which name the device problem clearly.
TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("forward", &fastrnn::forward);
  m.impl("backward", &fastrnn::backward);
}
TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("forward", &fastrnn::forward);
  m.impl("backward", &fastrnn::backward);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastrnn compiled kernels; the ops are torch.ops.fastrnn.*";
#ifdef FASTRNN_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  // True once CUDA sequence drivers are registered; the CUDA build so far has the pointwise kernels.
  m.attr("has_cuda_kernels") = false;
  m.def(
      "cell_shape",
      [](const std::string& mode) {
        const fastrnn::CellShape c = fastrnn::cell_shape(mode);
        return std::make_tuple(c.gates, c.saved);
      },
      "(G, S) of a mode: gates, and values saved for backward per (t, b), in units of H",
      pybind11::arg("mode"));
}
