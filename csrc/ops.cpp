// The torch glue: argument checks, allocation, dtype and device dispatch, op registration and the
// pybind11 module. The kernels behind it see only the params structs of params.h.
//
// Ops (namespace fastrnn), one call for a whole stack of layers (docs/stack-op.md):
//   rnn(mode, input, batch_sizes?, hx?, cx?, weights[], has_bias, num_layers, bidirectional,
//       proj_size, dropout_masks?, training) -> (output, h_n, c_n, reserve)
//   rnn_backward(mode, grad_output?, grad_h_n?, grad_c_n?, <rnn's inputs but training>, output,
//                reserve, input_needs_grad=True, hx_needs_grad=True)
//       -> (grad_input, grad_hx, grad_cx, grad_weights[])
// mode: "lstm", "gru", "rnn_tanh", "rnn_relu". input: padded [T, B, I], or packed data [N, I]
// with batch_sizes [T] (int64, CPU; then hx is required). weights: torch.nn's _flat_weights
// order. c_n and grad_cx are [0] unless LSTM; reserve, what backward needs, is [N, W] when
// training and [0] otherwise. grad_input (grad_hx) is [0] when input_needs_grad (hx_needs_grad)
// is false, and backward skips the products only it needs.
#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/Parallel.h>

#include <climits>
#include <cstdlib>
#if defined(_OPENMP)
#include <omp.h>
#endif
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

void check_tensor(const at::Tensor& t, const std::string& name, const at::Tensor& input,
                  at::IntArrayRef expected_shape) {
  TORCH_CHECK(t.device() == input.device(), "fastrnn: ", name, " is on ", t.device(),
              " but input is on ", input.device(), ": all tensors must be on one device");
  TORCH_CHECK_TYPE(t.scalar_type() == input.scalar_type(), "fastrnn: ", name, " has dtype ",
                   t.scalar_type(), " but input has dtype ", input.scalar_type(),
                   ": all tensors must have one dtype");
  TORCH_CHECK_VALUE(t.sizes() == expected_shape, "fastrnn: ", name, " must have shape ",
                    expected_shape, ", got ", t.sizes());
}

// Everything a call's arguments fix, checked against each other.
struct Stack {
  CellShape cell;
  int64_t T, B, N, I, H, P, L, D;
  bool packed, has_bias, project;
  int64_t weights_per_layer;  // tensors per (layer, direction) in the weights list
  std::vector<int64_t> batch_sizes, offsets;

  int64_t G() const { return cell.gates; }
  int64_t reserve_width() const { return fastrnn::reserve_width(L, D, cell.saved, H, P); }
  // The weights of (layer l, direction d): w_ih, w_hh, [b_ih, b_hh], [w_hr]
  int64_t first_weight(int64_t l, int64_t d) const { return (l * D + d) * weights_per_layer; }
};

std::string weight_name(const char* base, int64_t l, int64_t d) {
  return std::string(base) + "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
}

Stack check_stack(const std::string& mode, const at::Tensor& input, const OptTensor& batch_sizes,
                  const OptTensor& hx, const OptTensor& cx, at::TensorList weights,
                  bool has_bias, int64_t num_layers, bool bidirectional, int64_t proj_size,
                  const OptTensor& dropout_masks) {
  Stack s;
  s.cell = cell_shape(mode);
  const bool lstm = s.cell.kind == CellKind::kLstm;
  TORCH_CHECK_TYPE(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
                   "fastrnn: input must be float32 or float64, got ", input.scalar_type());
  TORCH_CHECK_VALUE(num_layers >= 1, "fastrnn: num_layers must be >= 1, got ", num_layers);
  TORCH_CHECK_VALUE(proj_size >= 0, "fastrnn: proj_size must be >= 0, got ", proj_size);
  TORCH_CHECK_VALUE(proj_size == 0 || lstm, "fastrnn: proj_size is only for mode 'lstm', not '",
                    mode, "'");
  s.L = num_layers, s.D = bidirectional ? 2 : 1;
  s.has_bias = has_bias, s.project = proj_size > 0;
  s.weights_per_layer = 2 + (has_bias ? 2 : 0) + (s.project ? 1 : 0);
  TORCH_CHECK_VALUE(static_cast<int64_t>(weights.size()) == s.L * s.D * s.weights_per_layer,
                    "fastrnn: expected ", s.L * s.D * s.weights_per_layer, " weight tensors (",
                    s.weights_per_layer, " for each of ", s.L, " layers x ", s.D,
                    " directions), got ", weights.size());

  s.packed = batch_sizes.has_value();
  if (s.packed) {
    TORCH_CHECK_VALUE(input.dim() == 2, "fastrnn: packed input must be 2-D [N, I], got shape ",
                      input.sizes());
    const at::Tensor& bs = *batch_sizes;
    TORCH_CHECK_VALUE(bs.dim() == 1 && bs.device().is_cpu() && bs.scalar_type() == at::kLong,
                      "fastrnn: batch_sizes must be a 1-D int64 CPU tensor, got ", bs.scalar_type(),
                      " of shape ", bs.sizes(), " on ", bs.device());
    s.T = bs.size(0);
    TORCH_CHECK_VALUE(s.T >= 1, "fastrnn: batch_sizes must have at least one step");
    const at::Tensor bsc = bs.contiguous();
    s.batch_sizes.assign(bsc.const_data_ptr<int64_t>(), bsc.const_data_ptr<int64_t>() + s.T);
    s.N = input.size(0), s.I = input.size(1), s.B = s.batch_sizes[0];
    int64_t total = 0;
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t b = s.batch_sizes[t];
      TORCH_CHECK_VALUE(b >= 1 && (t == 0 || b <= s.batch_sizes[t - 1]),
                        "fastrnn: batch_sizes must be >= 1 and non-increasing, got ", bs);
      s.offsets.push_back(total);
      total += b;
    }
    TORCH_CHECK_VALUE(total == s.N, "fastrnn: packed input has ", s.N,
                      " rows but batch_sizes sum to ", total);
    TORCH_CHECK_VALUE(hx.has_value(), "fastrnn: packed input needs hx (zeros if none)");
  } else {
    TORCH_CHECK_VALUE(input.dim() == 3, "fastrnn: input must be 3-D [T, B, I], got ", input.dim(),
                      "-D with shape ", input.sizes());
    s.T = input.size(0), s.B = input.size(1), s.I = input.size(2), s.N = s.T * s.B;
    TORCH_CHECK_VALUE(s.T >= 1, "fastrnn: input must have at least one time step (T >= 1), got T = ",
                      s.T);
    s.batch_sizes.assign(s.T, s.B);
    for (int64_t t = 0; t < s.T; ++t) s.offsets.push_back(t * s.B);
  }

  const at::Tensor& w_hh0 = weights[1];
  TORCH_CHECK_VALUE(w_hh0.dim() == 2 && w_hh0.size(0) % s.G() == 0,
                    "fastrnn: weight_hh_l0 must be 2-D [G*H, P] with G = ", s.G(), " for mode '",
                    mode, "', got shape ", w_hh0.sizes());
  s.H = w_hh0.size(0) / s.G();
  s.P = s.project ? proj_size : s.H;
  TORCH_CHECK_VALUE(!s.project || proj_size < s.H, "fastrnn: proj_size (", proj_size,
                    ") must be smaller than the hidden size (", s.H, ")");
  TORCH_CHECK_VALUE(s.B >= 1 && s.I >= 1 && s.H >= 1,
                    "fastrnn: batch, input and hidden sizes must be >= 1, got B = ", s.B,
                    ", I = ", s.I, ", H = ", s.H);
  const int64_t GH = s.G() * s.H, DP = s.D * s.P;
  // the BLAS indexes with 32-bit integers
  TORCH_CHECK_VALUE(s.N <= INT_MAX && GH * std::max({s.I, s.H, DP}) <= INT_MAX &&
                        s.N * std::max({GH, s.I, DP}) <= INT_MAX,
                    "fastrnn: sizes N = ", s.N, ", I = ", s.I, ", H = ", s.H,
                    " exceed the 32-bit index range of the BLAS");

  for (int64_t l = 0; l < s.L; ++l) {
    for (int64_t d = 0; d < s.D; ++d) {
      int64_t k = s.first_weight(l, d);
      const int64_t I_l = l == 0 ? s.I : DP;
      const at::Tensor& w_ih = weights[k];
      TORCH_CHECK_VALUE(w_ih.dim() == 2 && w_ih.size(0) == GH,
                        "fastrnn: ", weight_name("weight_ih", l, d), " must have shape [G*H, ",
                        l == 0 ? "I" : "D*P", "] = [", GH, ", ", I_l, "] for mode '", mode,
                        "' with H = ", s.H, ", got ", w_ih.sizes());
      if (l == 0) {
        TORCH_CHECK_VALUE(w_ih.size(1) == I_l, "fastrnn: input has I = ", I_l,
                          " features but weight_ih_l0", d == 1 ? "_reverse" : "", " expects ",
                          w_ih.size(1));
      } else {
        TORCH_CHECK_VALUE(w_ih.size(1) == I_l, "fastrnn: ", weight_name("weight_ih", l, d),
                          " must have D*P = ", I_l, " columns (layer ", l - 1,
                          "'s output), got ", w_ih.size(1));
      }
      check_tensor(w_ih, weight_name("weight_ih", l, d), input, {GH, I_l});
      check_tensor(weights[k + 1], weight_name("weight_hh", l, d), input, {GH, s.P});
      k += 2;
      if (has_bias) {
        check_tensor(weights[k], weight_name("bias_ih", l, d), input, {GH});
        check_tensor(weights[k + 1], weight_name("bias_hh", l, d), input, {GH});
        k += 2;
      }
      if (s.project) check_tensor(weights[k], weight_name("weight_hr", l, d), input, {s.P, s.H});
    }
  }
  if (hx) check_tensor(*hx, "hx", input, {s.L * s.D, s.B, s.P});
  if (lstm) {
    if (cx) check_tensor(*cx, "cx", input, {s.L * s.D, s.B, s.H});
  } else {
    TORCH_CHECK_VALUE(!cx, "fastrnn: cx (c0) is only for mode 'lstm', not '", mode, "'");
  }
  if (dropout_masks) {
    TORCH_CHECK_VALUE(s.L > 1, "fastrnn: dropout_masks need num_layers > 1");
    if (s.packed) {
      check_tensor(*dropout_masks, "dropout_masks", input, {s.L - 1, s.N, DP});
    } else {
      check_tensor(*dropout_masks, "dropout_masks", input, {s.L - 1, s.T, s.B, DP});
    }
  }
  return s;
}

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

at::Tensor empty0(const at::Tensor& like) { return at::empty({0}, like.options()); }

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? t.const_data_ptr<scalar_t>() : nullptr;
}

template <typename scalar_t>
scalar_t* mutable_ptr_or_null(at::Tensor& t) {
  return t.defined() && t.numel() ? t.mutable_data_ptr<scalar_t>() : nullptr;
}

// The kernels' threads: torch's intra-op pool, with as many threads as torch.get_num_threads().
// The BLAS itself runs single-threaded inside them, so no second pool of threads competes
// (OpenBLAS's workers spin for a while after each call and slowed torch's next op twofold).
Threads torch_threads() {
  cpu::set_blas_threads(1);
  Threads threads;
  threads.count = at::get_num_threads();
  threads.parallel_for = [](int64_t n, const std::function<void(int64_t)>& fn) {
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(i);
    });
  };
  // A team is an OpenMP parallel region of its own on the same pool (at::parallel_for may run
  // several tasks on one thread, which a team must not). Inside another region it is one thread.
  threads.parallel_team = [](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
#if defined(_OPENMP)
    if (!at::in_parallel_region()) {
#pragma omp parallel num_threads(static_cast<int>(n))
      fn(omp_get_thread_num(), omp_get_num_threads());
      return;
    }
#endif
    fn(0, 1);
  };
  return threads;
}

// The whole-sequence GEMMs through at::mm, on torch's threads: MKL in torch's x86 builds.
template <typename scalar_t>
void torch_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const scalar_t* A,
                int64_t lda, const scalar_t* B, int64_t ldb, scalar_t beta, scalar_t* C,
                int64_t ldc) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  // op(X) as a [rows, cols] view of row-major X (X itself [cols, rows] when transposed)
  const auto view = [&](const scalar_t* x, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    auto* data = const_cast<scalar_t*>(x);  // read only
    return trans ? at::from_blob(data, {cols, rows}, {ld, 1}, opts).t()
                 : at::from_blob(data, {rows, cols}, {ld, 1}, opts);
  };
  const at::Tensor a = view(A, M, K, lda, trans_a), b = view(B, K, N, ldb, trans_b);
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == scalar_t(0)) {
    at::mm_out(c, a, b);
  } else {
    at::addmm_out(c, c, a, b, beta, 1);
  }
}

// The engine of the whole-sequence GEMMs, measured at the README shapes (benchmarks/README.md):
// on an Intel Xeon, MKL through at::mm runs them 15-25% faster than OpenBLAS; on an AMD Zen 5,
// OpenBLAS ran a large sgemm 2.3x faster than MKL (which takes slow paths on AMD CPUs). So: at::mm
// on Intel CPUs when torch has MKL, else the kernels' OpenBLAS. FASTRNN_GEMM=torch or openblas
// overrides (tests run both).
bool gemm_through_torch() {
  static const bool through_torch = [] {
    const char* want = std::getenv("FASTRNN_GEMM");
    if (want && *want) {
      const std::string w(want);
      TORCH_CHECK_VALUE(w == "torch" || w == "openblas",
                        "fastrnn: FASTRNN_GEMM must be 'torch' or 'openblas', got '", w, "'");
      return w == "torch";
    }
    return at::hasMKL() && cpu::cpu_is_intel();
  }();
  return through_torch;
}

std::string gemm_engine() { return gemm_through_torch() ? "torch" : "openblas"; }

// What forward and backward both read, laid out as the kernels want it.
struct StackInputs {
  at::Tensor x;  // [N, I] rows with a unit stride along I (a view of input where it can be)
  int64_t ldx;
  at::Tensor hx, cx, dropout_masks;  // contiguous; hx (and cx) zeros when absent
  std::vector<at::Tensor> weights;   // contiguous

  StackInputs(const Stack& s, const at::Tensor& input, const OptTensor& hx_, const OptTensor& cx_,
              at::TensorList weights_, const OptTensor& dropout_masks_) {
    x = input.reshape({s.N, s.I});  // a view unless the layout cannot be one
    if (!((s.I == 1 || x.stride(1) == 1) && (s.N == 1 || x.stride(0) >= s.I))) x = x.contiguous();
    ldx = s.N == 1 ? s.I : x.stride(0);
    hx = hx_ ? hx_->contiguous() : at::zeros({s.L * s.D, s.B, s.P}, input.options());
    if (s.cell.kind == CellKind::kLstm) {
      cx = cx_ ? cx_->contiguous() : at::zeros({s.L * s.D, s.B, s.H}, input.options());
    }
    if (dropout_masks_) dropout_masks = dropout_masks_->contiguous();
    for (const at::Tensor& w : weights_) weights.push_back(w.contiguous());
  }

  template <typename scalar_t>
  std::vector<LayerWeights<scalar_t>> layer_weights(const Stack& s) const {
    std::vector<LayerWeights<scalar_t>> out(s.L * s.D);
    for (int64_t k = 0; k < s.L * s.D; ++k) {
      const at::Tensor* w = weights.data() + k * s.weights_per_layer;
      LayerWeights<scalar_t>& lw = out[k];
      lw.w_ih = w[0].const_data_ptr<scalar_t>();
      lw.w_hh = w[1].const_data_ptr<scalar_t>();
      if (s.has_bias) {
        lw.b_ih = w[2].const_data_ptr<scalar_t>();
        lw.b_hh = w[3].const_data_ptr<scalar_t>();
      }
      if (s.project) lw.w_hr = w[s.has_bias ? 4 : 2].const_data_ptr<scalar_t>();
    }
    return out;
  }

  template <typename scalar_t>
  RnnParams<scalar_t> params(const Stack& s, const LayerWeights<scalar_t>* lw) const {
    RnnParams<scalar_t> p;
    p.cell = s.cell.kind;
    p.T = s.T, p.B = s.B, p.N = s.N, p.I = s.I, p.H = s.H, p.P = s.P, p.L = s.L, p.D = s.D;
    p.batch_sizes = s.batch_sizes.data();
    p.offsets = s.offsets.data();
    p.x = x.const_data_ptr<scalar_t>();
    p.ldx = ldx;
    p.hx = hx.const_data_ptr<scalar_t>();
    p.cx = ptr_or_null<scalar_t>(cx);
    p.weights = lw;
    p.dropout_masks = ptr_or_null<scalar_t>(dropout_masks);
    p.threads = torch_threads();
    p.sequence_gemm = gemm_through_torch() ? &torch_gemm<scalar_t> : nullptr;
    return p;
  }
};

std::vector<int64_t> output_shape(const Stack& s, int64_t width) {
  return s.packed ? std::vector<int64_t>{s.N, width} : std::vector<int64_t>{s.T, s.B, width};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rnn(
    const std::string& mode, const at::Tensor& input, const OptTensor& batch_sizes,
    const OptTensor& hx, const OptTensor& cx, at::TensorList weights, bool has_bias,
    int64_t num_layers, bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
    bool training) {
  const Stack s = check_stack(mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers,
                              bidirectional, proj_size, dropout_masks);
  check_cpu(input);
  const StackInputs in(s, input, hx, cx, weights, dropout_masks);
  const auto opts = input.options();
  at::Tensor output = at::empty(output_shape(s, s.D * s.P), opts);
  at::Tensor h_n = at::empty({s.L * s.D, s.B, s.P}, opts);
  at::Tensor c_n = s.cell.kind == CellKind::kLstm ? at::empty({s.L * s.D, s.B, s.H}, opts)
                                                  : empty0(input);
  at::Tensor reserve = training ? at::empty({s.N, s.reserve_width()}, opts) : empty0(input);

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fastrnn::rnn", [&] {
    const auto lw = in.layer_weights<scalar_t>(s);
    RnnParams<scalar_t> p = in.params<scalar_t>(s, lw.data());
    p.output = output.mutable_data_ptr<scalar_t>();
    p.h_n = h_n.mutable_data_ptr<scalar_t>();
    p.c_n = mutable_ptr_or_null<scalar_t>(c_n);
    p.reserve = mutable_ptr_or_null<scalar_t>(reserve);
    cpu::rnn_forward(p);
  });
  return {output, h_n, c_n, reserve};
}

// Contiguous gradient of the given shape, or an undefined tensor for an absent (zero) one.
at::Tensor grad_or_undefined(const OptTensor& g, const char* name, const at::Tensor& input,
                             at::IntArrayRef shape) {
  if (!g) return {};
  check_tensor(*g, name, input, shape);
  return g->contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_backward(
    const std::string& mode, const OptTensor& grad_output, const OptTensor& grad_h_n,
    const OptTensor& grad_c_n, const at::Tensor& input, const OptTensor& batch_sizes,
    const OptTensor& hx, const OptTensor& cx, at::TensorList weights, bool has_bias,
    int64_t num_layers, bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
    const at::Tensor& output, const at::Tensor& reserve, bool input_needs_grad,
    bool hx_needs_grad) {
  const Stack s = check_stack(mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers,
                              bidirectional, proj_size, dropout_masks);
  check_cpu(input);
  const bool lstm = s.cell.kind == CellKind::kLstm;
  const int64_t DP = s.D * s.P;
  check_tensor(output, "output", input, output_shape(s, DP));
  TORCH_CHECK_VALUE(reserve.dim() == 2,
                    "fastrnn: backward needs the reserve of a forward with training=True");
  check_tensor(reserve, "reserve", input, {s.N, s.reserve_width()});
  const at::Tensor g_out = grad_or_undefined(grad_output, "grad_output", input, output_shape(s, DP));
  const at::Tensor g_hn = grad_or_undefined(grad_h_n, "grad_h_n", input, {s.L * s.D, s.B, s.P});
  const at::Tensor g_cn =
      lstm ? grad_or_undefined(grad_c_n, "grad_c_n", input, {s.L * s.D, s.B, s.H}) : at::Tensor();

  const StackInputs in(s, input, hx, cx, weights, dropout_masks);
  const at::Tensor out = output.contiguous();
  at::Tensor rsv = reserve.contiguous();
  const auto opts = input.options();
  // A gradient nobody wants is an empty tensor, and the work only it needs is skipped.
  at::Tensor grad_input = input_needs_grad ? at::empty(output_shape(s, s.I), opts) : empty0(input);
  at::Tensor grad_hx = hx_needs_grad ? at::empty({s.L * s.D, s.B, s.P}, opts) : empty0(input);
  at::Tensor grad_cx = lstm ? at::empty({s.L * s.D, s.B, s.H}, opts) : empty0(input);
  std::vector<at::Tensor> grad_weights;
  for (const at::Tensor& w : in.weights) grad_weights.push_back(at::empty_like(w));

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fastrnn::rnn_backward", [&] {
    const auto lw = in.layer_weights<scalar_t>(s);
    std::vector<LayerGrads<scalar_t>> lg(s.L * s.D);
    for (int64_t k = 0; k < s.L * s.D; ++k) {
      at::Tensor* g = grad_weights.data() + k * s.weights_per_layer;
      lg[k].w_ih = g[0].mutable_data_ptr<scalar_t>();
      lg[k].w_hh = g[1].mutable_data_ptr<scalar_t>();
      if (s.has_bias) {
        lg[k].b_ih = g[2].mutable_data_ptr<scalar_t>();
        lg[k].b_hh = g[3].mutable_data_ptr<scalar_t>();
      }
      if (s.project) lg[k].w_hr = g[s.has_bias ? 4 : 2].mutable_data_ptr<scalar_t>();
    }
    RnnGradParams<scalar_t> p;
    p.fwd = in.params<scalar_t>(s, lw.data());
    p.fwd.output = const_cast<scalar_t*>(out.const_data_ptr<scalar_t>());  // read only
    p.fwd.reserve = mutable_ptr_or_null<scalar_t>(rsv);                   // read only
    p.grad_output = ptr_or_null<scalar_t>(g_out);
    p.grad_h_n = ptr_or_null<scalar_t>(g_hn);
    p.grad_c_n = ptr_or_null<scalar_t>(g_cn);
    p.grad_x = mutable_ptr_or_null<scalar_t>(grad_input);
    p.grad_hx = mutable_ptr_or_null<scalar_t>(grad_hx);
    p.grad_cx = mutable_ptr_or_null<scalar_t>(grad_cx);
    p.grads = lg.data();
    cpu::rnn_backward(p);
  });
  return {grad_input, grad_hx, grad_cx, grad_weights};
}

// Autograd of rnn, in C++: as a Python autograd function (torch.library.register_autograd) the
// bookkeeping of one training call cost more than the whole forward and backward of a small
// layer (flattening the arguments, Python frames: ~0.5 ms a call).
class RnnFunction : public torch::autograd::Function<RnnFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const std::string& mode, const at::Tensor& input,
      const OptTensor& batch_sizes, const OptTensor& hx, const OptTensor& cx,
      at::TensorList weights, bool has_bias, int64_t num_layers, bool bidirectional,
      int64_t proj_size, const OptTensor& dropout_masks, bool training) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastrnn::rnn", "")
                               .typed<decltype(rnn)>();
    auto [output, h_n, c_n, reserve] =
        op.call(mode, input, batch_sizes, hx, cx, weights, has_bias, num_layers, bidirectional,
                proj_size, dropout_masks, training);
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["num_layers"] = num_layers;
    ctx->saved_data["bidirectional"] = bidirectional;
    ctx->saved_data["proj_size"] = proj_size;
    ctx->saved_data["training"] = training;
    ctx->saved_data["has_cx"] = cx.has_value();
    // what backward must compute: dL/dx and dL/dh0 each cost products of their own
    ctx->saved_data["input_needs_grad"] = input.requires_grad();
    ctx->saved_data["hx_needs_grad"] = hx.has_value() && hx->requires_grad();
    std::vector<at::Tensor> saved = {input,  batch_sizes.value_or(at::Tensor()),
                                     hx.value_or(at::Tensor()), cx.value_or(at::Tensor()),
                                     dropout_masks.value_or(at::Tensor()), output, reserve};
    saved.insert(saved.end(), weights.begin(), weights.end());
    ctx->save_for_backward(saved);
    ctx->mark_non_differentiable({reserve});
    ctx->set_materialize_grads(false);  // the kernel reads an absent gradient as zero
    return {output, h_n, c_n, reserve};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(ctx->saved_data["training"].toBool(),
                "fastrnn: backward through a forward that ran with training=False; call it with "
                "training=True (fastrnn.functional does so when grad is enabled)");
    const std::vector<at::Tensor> saved = ctx->get_saved_variables();
    const auto optional = [](const at::Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); };
    const std::vector<at::Tensor> weights(saved.begin() + 7, saved.end());
    const std::string mode = ctx->saved_data["mode"].toStringRef();
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastrnn::rnn_backward", "")
                               .typed<decltype(rnn_backward)>();
    auto [grad_input, grad_hx, grad_cx, grad_weights] = op.call(
        mode, optional(grads[0]), optional(grads[1]),
        mode == "lstm" ? optional(grads[2]) : OptTensor(), saved[0], optional(saved[1]),
        optional(saved[2]), optional(saved[3]), weights, ctx->saved_data["has_bias"].toBool(),
        ctx->saved_data["num_layers"].toInt(), ctx->saved_data["bidirectional"].toBool(),
        ctx->saved_data["proj_size"].toInt(), optional(saved[4]), saved[5], saved[6],
        ctx->saved_data["input_needs_grad"].toBool(), ctx->saved_data["hx_needs_grad"].toBool());
    // one gradient per argument of forward, the weights list counting one per tensor
    torch::autograd::variable_list result = {
        at::Tensor(),  // mode
        ctx->saved_data["input_needs_grad"].toBool() ? grad_input : at::Tensor(),
        at::Tensor(),  // batch_sizes
        ctx->saved_data["hx_needs_grad"].toBool() ? grad_hx : at::Tensor(),
        ctx->saved_data["has_cx"].toBool() ? grad_cx : at::Tensor()};
    result.insert(result.end(), grad_weights.begin(), grad_weights.end());
    // has_bias, num_layers, bidirectional, proj_size, dropout_masks, training
    result.resize(result.size() + 6);
    return result;
  }
};

// Autograd of rnn_backward: it has none, and says so when something differentiates through it
// (a double backward) rather than let autograd's fallback return zeros with a warning.
class RnnBackwardFunction : public torch::autograd::Function<RnnBackwardFunction> {
 public:
  static torch::autograd::variable_list forward(
      torch::autograd::AutogradContext* ctx, const std::string& mode,
      const OptTensor& grad_output, const OptTensor& grad_h_n, const OptTensor& grad_c_n,
      const at::Tensor& input, const OptTensor& batch_sizes, const OptTensor& hx,
      const OptTensor& cx, at::TensorList weights, bool has_bias, int64_t num_layers,
      bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
      const at::Tensor& output, const at::Tensor& reserve, bool input_needs_grad,
      bool hx_needs_grad) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastrnn::rnn_backward", "")
                               .typed<decltype(rnn_backward)>();
    auto [grad_input, grad_hx, grad_cx, grad_weights] =
        op.call(mode, grad_output, grad_h_n, grad_c_n, input, batch_sizes, hx, cx, weights,
                has_bias, num_layers, bidirectional, proj_size, dropout_masks, output, reserve,
                input_needs_grad, hx_needs_grad);
    torch::autograd::variable_list result = {grad_input, grad_hx, grad_cx};
    result.insert(result.end(), grad_weights.begin(), grad_weights.end());
    return result;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false,
                "fastrnn: double backward is not supported: the gradients of a fastrnn op "
                "cannot be differentiated again (autograd.grad with create_graph=True, then a "
                "backward through its result)");
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>> rnn_backward_autograd(
    const std::string& mode, const OptTensor& grad_output, const OptTensor& grad_h_n,
    const OptTensor& grad_c_n, const at::Tensor& input, const OptTensor& batch_sizes,
    const OptTensor& hx, const OptTensor& cx, at::TensorList weights, bool has_bias,
    int64_t num_layers, bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
    const at::Tensor& output, const at::Tensor& reserve, bool input_needs_grad,
    bool hx_needs_grad) {
  const auto out = RnnBackwardFunction::apply(mode, grad_output, grad_h_n, grad_c_n, input,
                                              batch_sizes, hx, cx, weights, has_bias, num_layers,
                                              bidirectional, proj_size, dropout_masks, output,
                                              reserve, input_needs_grad, hx_needs_grad);
  return {out[0], out[1], out[2], std::vector<at::Tensor>(out.begin() + 3, out.end())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rnn_autograd(
    const std::string& mode, const at::Tensor& input, const OptTensor& batch_sizes,
    const OptTensor& hx, const OptTensor& cx, at::TensorList weights, bool has_bias,
    int64_t num_layers, bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
    bool training) {
  const auto out = RnnFunction::apply(mode, input, batch_sizes, hx, cx, weights, has_bias,
                                      num_layers, bidirectional, proj_size, dropout_masks,
                                      training);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY(fastrnn, m) {
  m.def(
      "rnn(str mode, Tensor input, Tensor? batch_sizes, Tensor? hx, Tensor? cx, Tensor[] weights, "
      "bool has_bias, int num_layers, bool bidirectional, int proj_size, Tensor? dropout_masks, "
      "bool training) -> (Tensor output, Tensor h_n, Tensor c_n, Tensor reserve)");
  m.def(
      "rnn_backward(str mode, Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, "
      "Tensor input, Tensor? batch_sizes, Tensor? hx, Tensor? cx, Tensor[] weights, "
      "bool has_bias, int num_layers, bool bidirectional, int proj_size, Tensor? dropout_masks, "
      "Tensor output, Tensor reserve, bool input_needs_grad=True, bool hx_needs_grad=True) "
      "-> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor[] grad_weights)");
}

// CUDA tensors reach the same entry points, which name the device problem clearly.
TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn", &fastrnn::rnn);
  m.impl("rnn_backward", &fastrnn::rnn_backward);
}
TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn", &fastrnn::rnn);
  m.impl("rnn_backward", &fastrnn::rnn_backward);
}
TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("rnn", &fastrnn::rnn_autograd);
  m.impl("rnn_backward", &fastrnn::rnn_backward_autograd);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastrnn compiled kernels; the ops are torch.ops.fastrnn.*";
#ifdef FASTRNN_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  m.def("cpu_isa", &fastrnn::cpu::isa_name,
        "Instruction set the CPU kernels run with (avx512, avx2, baseline; FASTRNN_CPU_ISA "
        "picks a lower one)");
  m.def("gemm_engine", &fastrnn::gemm_engine,
        "Engine of the whole-sequence GEMMs: 'torch' (at::mm, MKL) on Intel CPUs, 'openblas' "
        "elsewhere; FASTRNN_GEMM=torch or openblas picks one");
  // True once CUDA sequence drivers are registered; the CUDA build so far has the pointwise kernels.
  m.attr("has_cuda_kernels") = false;
  m.def(
      "cell_shape",
      [](const std::string& mode) {
        const fastrnn::CellShape c = fastrnn::cell_shape(mode);
        return std::make_tuple(c.gates, c.saved);
      },
      "(G, S) of a mode: gates, and values saved for backward per row, in units of H",
      pybind11::arg("mode"));
  m.def(
      "reserve_width",
      [](const std::string& mode, int64_t num_layers, int64_t directions, int64_t hidden_size,
         int64_t proj_size) {
        const fastrnn::CellShape c = fastrnn::cell_shape(mode);
        return fastrnn::reserve_width(num_layers, directions, c.saved, hidden_size,
                                      proj_size > 0 ? proj_size : hidden_size);
      },
      "Columns of the reserve (rows: N) that a training forward of this stack saves",
      pybind11::arg("mode"), pybind11::arg("num_layers"), pybind11::arg("directions"),
      pybind11::arg("hidden_size"), pybind11::arg("proj_size"));
}
