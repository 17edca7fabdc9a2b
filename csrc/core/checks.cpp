#include "core/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <climits>
#include <string>

#include "core/reserve.h"

namespace fastrnn {
namespace {

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

std::string weight_name(const char* base, int64_t l, int64_t d) {
  return std::string(base) + "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? t.const_data_ptr<scalar_t>() : nullptr;
}

template <typename scalar_t>
scalar_t* mutable_ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? t.mutable_data_ptr<scalar_t>() : nullptr;
}

at::Tensor empty0(const at::TensorOptions& options) { return at::empty({0}, options); }

// Contiguous gradient of the given shape, or an undefined tensor for an absent (zero) one.
at::Tensor grad_or_undefined(const OptTensor& g, const char* name, const at::Tensor& input,
                             at::IntArrayRef shape) {
  if (!g) return {};
  check_tensor(*g, name, input, shape);
  return g->contiguous();
}

}  // namespace

int64_t StackShape::reserve_width() const {
  return fastrnn::reserve_width(L, D, config.saved, H, P);
}

std::vector<int64_t> StackShape::output_shape(int64_t width) const {
  return packed ? std::vector<int64_t>{N, width} : std::vector<int64_t>{T, B, width};
}

StackShape check_stack(const StackConfig& config, const StackTensors& stack,
                       const OptTensor& norms_probe) {
  const at::Tensor& input = stack.input;
  const at::TensorList weights = stack.weights;
  const std::string_view mode = config.mode();
  StackShape s;
  s.config = config;
  TORCH_CHECK_TYPE(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
                   "fastrnn: input must be float32 or float64, got ", input.scalar_type());
  s.L = config.num_layers, s.D = config.directions;
  s.project = config.proj_size > 0;
  s.weights_per_layer = 2 + (config.has_bias ? 2 : 0) + (s.project ? 1 : 0);
  TORCH_CHECK_VALUE(static_cast<int64_t>(weights.size()) == s.L * s.D * s.weights_per_layer,
                    "fastrnn: expected ", s.L * s.D * s.weights_per_layer, " weight tensors (",
                    s.weights_per_layer, " for each of ", s.L, " layers x ", s.D,
                    " directions), got ", weights.size());

  s.packed = stack.batch_sizes.has_value();
  if (s.packed) {
    TORCH_CHECK_VALUE(input.dim() == 2, "fastrnn: packed input must be 2-D [N, I], got shape ",
                      input.sizes());
    const at::Tensor& bs = *stack.batch_sizes;
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
    TORCH_CHECK_VALUE(stack.hx.has_value(), "fastrnn: packed input needs hx (zeros if none)");
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
  s.P = s.project ? config.proj_size : s.H;
  TORCH_CHECK_VALUE(!s.project || config.proj_size < s.H, "fastrnn: proj_size (",
                    config.proj_size, ") must be smaller than the hidden size (", s.H, ")");
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
      int64_t k = (l * s.D + d) * s.weights_per_layer;  // w_ih, w_hh, [b_ih, b_hh], [w_hr]
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
      if (config.has_bias) {
        check_tensor(weights[k], weight_name("bias_ih", l, d), input, {GH});
        check_tensor(weights[k + 1], weight_name("bias_hh", l, d), input, {GH});
        k += 2;
      }
      if (s.project) check_tensor(weights[k], weight_name("weight_hr", l, d), input, {s.P, s.H});
    }
  }
  if (stack.hx) check_tensor(*stack.hx, "hx", input, s.state_shape(s.P));
  if (config.lstm()) {
    if (stack.cx) check_tensor(*stack.cx, "cx", input, s.state_shape(s.H));
  } else {
    TORCH_CHECK_VALUE(!stack.cx, "fastrnn: cx (c0) is only for mode 'lstm', not '", mode, "'");
  }
  if (stack.dropout_masks) {
    TORCH_CHECK_VALUE(s.L > 1, "fastrnn: dropout_masks need num_layers > 1");
    if (s.packed) {
      check_tensor(*stack.dropout_masks, "dropout_masks", input, {s.L - 1, s.N, DP});
    } else {
      check_tensor(*stack.dropout_masks, "dropout_masks", input, {s.L - 1, s.T, s.B, DP});
    }
  }
  if (norms_probe) {
    const at::Tensor& probe = *norms_probe;
    TORCH_CHECK(probe.device() == input.device(), "fastrnn: norms_probe is on ", probe.device(),
                " but input is on ", input.device(), ": all tensors must be on one device");
    TORCH_CHECK_TYPE(probe.scalar_type() == at::kFloat,
                     "fastrnn: norms_probe must be float32, got ", probe.scalar_type());
    TORCH_CHECK_VALUE(probe.sizes() == at::IntArrayRef({2, s.L * s.D, s.T}),
                      "fastrnn: norms_probe must have shape [2, L*D, T] = [2, ", s.L * s.D, ", ",
                      s.T, "], got ", probe.sizes());
  }
  return s;
}

StackInputs::StackInputs(const StackShape& s, const StackTensors& stack) {
  x = stack.input.reshape({s.N, s.I});  // a view unless the layout cannot be one
  if (!((s.I == 1 || x.stride(1) == 1) && (s.N == 1 || x.stride(0) >= s.I))) x = x.contiguous();
  ldx = s.N == 1 ? s.I : x.stride(0);
  const auto options = stack.input.options();
  hx = stack.hx ? stack.hx->contiguous() : at::zeros(s.state_shape(s.P), options);
  if (s.config.lstm()) {
    cx = stack.cx ? stack.cx->contiguous() : at::zeros(s.state_shape(s.H), options);
  }
  if (stack.dropout_masks) dropout_masks = stack.dropout_masks->contiguous();
  for (const at::Tensor& w : stack.weights) weights.push_back(w.contiguous());
}

template <typename scalar_t>
RnnParams<scalar_t> StackInputs::params(const StackShape& s,
                                        std::vector<LayerWeights<scalar_t>>& lw) const {
  lw.assign(s.L * s.D, {});
  for (int64_t k = 0; k < s.L * s.D; ++k) {
    const at::Tensor* w = weights.data() + k * s.weights_per_layer;
    lw[k].w_ih = w[0].const_data_ptr<scalar_t>();
    lw[k].w_hh = w[1].const_data_ptr<scalar_t>();
    if (s.config.has_bias) {
      lw[k].b_ih = w[2].const_data_ptr<scalar_t>();
      lw[k].b_hh = w[3].const_data_ptr<scalar_t>();
    }
    if (s.project) lw[k].w_hr = w[s.config.has_bias ? 4 : 2].const_data_ptr<scalar_t>();
  }
  RnnParams<scalar_t> p;
  p.cell = s.config.cell;
  p.options = s.config.options;
  p.T = s.T, p.B = s.B, p.N = s.N, p.I = s.I, p.H = s.H, p.P = s.P, p.L = s.L, p.D = s.D;
  p.batch_sizes = s.batch_sizes.data();
  p.offsets = s.offsets.data();
  p.x = x.const_data_ptr<scalar_t>();
  p.ldx = ldx;
  p.hx = hx.const_data_ptr<scalar_t>();
  p.cx = ptr_or_null<scalar_t>(cx);
  p.weights = lw.data();
  p.dropout_masks = ptr_or_null<scalar_t>(dropout_masks);
  return p;
}

StackOutputs::StackOutputs(const StackShape& s, bool training, const at::TensorOptions& options) {
  output = at::empty(s.output_shape(s.D * s.P), options);
  h_n = at::empty(s.state_shape(s.P), options);
  c_n = s.config.lstm() ? at::empty(s.state_shape(s.H), options) : empty0(options);
  reserve = training ? at::empty({s.N, s.reserve_width()}, options) : empty0(options);
}

template <typename scalar_t>
void StackOutputs::fill(RnnParams<scalar_t>& p) const {
  p.output = output.mutable_data_ptr<scalar_t>();
  p.h_n = h_n.mutable_data_ptr<scalar_t>();
  p.c_n = mutable_ptr_or_null<scalar_t>(c_n);
  p.reserve = mutable_ptr_or_null<scalar_t>(reserve);
}

StackGrads::StackGrads(const StackShape& s, const RnnBackwardArgs& a, const StackInputs& in) {
  const at::Tensor& input = a.stack.input;
  const auto out_shape = s.output_shape(s.D * s.P);
  check_tensor(a.output, "output", input, out_shape);
  TORCH_CHECK_VALUE(a.reserve.dim() == 2,
                    "fastrnn: backward needs the reserve of a forward with training=True");
  check_tensor(a.reserve, "reserve", input, {s.N, s.reserve_width()});
  grad_output = grad_or_undefined(a.grad_output, "grad_output", input, out_shape);
  grad_h_n = grad_or_undefined(a.grad_h_n, "grad_h_n", input, s.state_shape(s.P));
  if (s.config.lstm()) {
    grad_c_n = grad_or_undefined(a.grad_c_n, "grad_c_n", input, s.state_shape(s.H));
  }
  output = a.output.contiguous();
  reserve = a.reserve.contiguous();
  // A gradient nobody wants is an empty tensor, and the work only it needs is skipped.
  const auto options = input.options();
  grad_input = a.input_needs_grad ? at::empty(s.output_shape(s.I), options) : empty0(options);
  grad_hx = a.hx_needs_grad ? at::empty(s.state_shape(s.P), options) : empty0(options);
  grad_cx = s.config.lstm() ? at::empty(s.state_shape(s.H), options) : empty0(options);
  for (const at::Tensor& w : in.weights) grad_weights.push_back(at::empty_like(w));
  grad_norms = a.record_norms ? at::zeros({2, s.L * s.D, s.T}, options.dtype(at::kFloat))
                              : at::empty({0}, options.dtype(at::kFloat));
}

template <typename scalar_t>
void StackGrads::fill(RnnGradParams<scalar_t>& p, std::vector<LayerGrads<scalar_t>>& lg) const {
  const int64_t layers = p.fwd.L * p.fwd.D;
  const int64_t per_layer = static_cast<int64_t>(grad_weights.size()) / layers;
  const bool has_bias = p.fwd.weights[0].b_ih != nullptr;
  lg.assign(layers, {});
  for (int64_t k = 0; k < layers; ++k) {
    const at::Tensor* g = grad_weights.data() + k * per_layer;
    lg[k].w_ih = g[0].mutable_data_ptr<scalar_t>();
    lg[k].w_hh = g[1].mutable_data_ptr<scalar_t>();
    if (has_bias) {
      lg[k].b_ih = g[2].mutable_data_ptr<scalar_t>();
      lg[k].b_hh = g[3].mutable_data_ptr<scalar_t>();
    }
    if (p.fwd.weights[0].w_hr) lg[k].w_hr = g[has_bias ? 4 : 2].mutable_data_ptr<scalar_t>();
  }
  p.fwd.output = const_cast<scalar_t*>(output.const_data_ptr<scalar_t>());  // read only
  p.fwd.reserve = mutable_ptr_or_null<scalar_t>(reserve);                   // read only
  p.grad_output = ptr_or_null<scalar_t>(grad_output);
  p.grad_h_n = ptr_or_null<scalar_t>(grad_h_n);
  p.grad_c_n = ptr_or_null<scalar_t>(grad_c_n);
  p.grad_x = mutable_ptr_or_null<scalar_t>(grad_input);
  p.grad_hx = mutable_ptr_or_null<scalar_t>(grad_hx);
  p.grad_cx = mutable_ptr_or_null<scalar_t>(grad_cx);
  p.grads = lg.data();
  p.grad_norms = grad_norms.numel() ? grad_norms.mutable_data_ptr<float>() : nullptr;
}

#define FASTRNN_INSTANTIATE(scalar_t)                                                          \
  template RnnParams<scalar_t> StackInputs::params(const StackShape&,                          \
                                                   std::vector<LayerWeights<scalar_t>>&) const; \
  template void StackOutputs::fill(RnnParams<scalar_t>&) const;                                \
  template void StackGrads::fill(RnnGradParams<scalar_t>&, std::vector<LayerGrads<scalar_t>>&) \
      const;
FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn
