#include "core/checks.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/EmptyTensor.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <ostream>
#include <string>

#include "core/reserve.h"
#include "cpu/scratch.h"

namespace fastrnn {
namespace {

// Sizes are >= 0. Products and sums saturate at INT64_MAX, which no real size reaches, so a
// result that does not fit compares as too large instead of wrapping around.
int64_t size_mul(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}
int64_t size_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

// A tensor's name in an error message: written out only when a check fails (building it on
// every call cost more than the checks: strings for each weight of each call).
struct TensorName {
  const char* base;
  int64_t layer = -1;  // a layer's weight: base_l{layer}[_reverse]
  int64_t direction = 0;
  int64_t index = -1;  // else the weights list's k: weights[k] (layer, direction)

  TensorName(const char* name) : base(name) {}  // NOLINT: a plain name converts
  TensorName(const char* name, int64_t layer, int64_t direction, int64_t index = -1)
      : base(name), layer(layer), direction(direction), index(index) {}
};

std::ostream& operator<<(std::ostream& os, const TensorName& n) {
  if (n.index >= 0) {
    return os << n.base << "[" << n.index << "] (layer " << n.layer << ", direction "
              << n.direction << ")";
  }
  os << n.base;
  if (n.layer >= 0) os << "_l" << n.layer << (n.direction == 1 ? "_reverse" : "");
  return os;
}

void check_device(const TensorMeta& t, const TensorName& name, const TensorMeta& input) {
  if (t.device == input.device) return;
  const std::string a = t.device.str(), b = input.device.str();
  TORCH_CHECK(false, "fastrnn: all tensors must be on one device, got ", std::min(a, b), ", ",
              std::max(a, b), ": ", name, " is on ", a, " but input is on ", b);
}

void check_tensor(const TensorMeta& t, const TensorName& name, const TensorMeta& input,
                  at::IntArrayRef expected_shape) {
  check_device(t, name, input);
  TORCH_CHECK_TYPE(t.dtype == input.dtype, "fastrnn: ", name, " has dtype ", t.dtype,
                   " but input has dtype ", input.dtype, ": all tensors must have one dtype");
  TORCH_CHECK_VALUE(t.sizes == expected_shape, "fastrnn: ", name, " must have shape ",
                    expected_shape, ", got ", t.sizes);
}

// A tensor's data as the kernels' type T (KernelType in checks.h): the same bytes.
template <typename T>
struct AtTypeOf {
  using type = T;
};
template <>
struct AtTypeOf<bfloat16> {
  using type = at::BFloat16;
};
template <>
struct AtTypeOf<float16> {
  using type = at::Half;
};

template <typename T>
const T* data(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr<typename AtTypeOf<T>::type>());
}

template <typename T>
T* mutable_data(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr<typename AtTypeOf<T>::type>());
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? data<scalar_t>(t) : nullptr;
}

template <typename scalar_t>
scalar_t* mutable_ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() ? mutable_data<scalar_t>(t) : nullptr;
}

// at::empty, on the CPU straight from the allocator: through the dispatcher each of the dozen
// tensors a one-step call makes cost 2-3 thousand instructions (callgrind), more than the
// kernel's own work at B = 1.
at::Tensor empty(at::IntArrayRef shape, const at::TensorOptions& options) {
  return options.device().is_cpu() ? at::detail::empty_cpu(shape, options)
                                   : at::empty(shape, options);
}
at::Tensor empty0(const at::TensorOptions& options) { return empty({0}, options); }

// The reserve, on the CPU from the scratch buffers the drivers keep between calls
// (cpu/scratch.h), when it is one of their size: a training call's largest allocation (an
// LSTM's: 5 values a unit and row), which otherwise faults its pages in again on most calls. It
// is the op's own (saved for backward, never resized), so its storage may be a fixed buffer.
at::Tensor reserve_empty(at::IntArrayRef shape, const at::TensorOptions& options) {
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(shape)) *
                       c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (!options.device().is_cpu() || bytes < cpu::scratch_cache::kMinBytes) {
    return empty(shape, options);
  }
  size_t capacity = 0;
  void* p = cpu::scratch_cache::allocate(bytes, capacity);
  return at::from_blob(
      p, shape, [capacity](void* q) { cpu::scratch_cache::release(q, capacity); }, options);
}

// at::zeros, on the CPU without fill_'s dispatch and TensorIterator: one-step calls without a
// state make one or two of these each way
at::Tensor zeros(at::IntArrayRef shape, const at::TensorOptions& options) {
  at::Tensor t = empty(shape, options);
  if (t.is_cpu()) {
    if (t.nbytes()) std::memset(t.mutable_data_ptr(), 0, t.nbytes());
  } else {
    t.zero_();
  }
  return t;
}

template <typename Word>
void copy_strided(const at::Tensor& t, at::Tensor& out) {
  std::array<int64_t, 3> size{1, 1, 1}, stride{0, 0, 0};
  for (int64_t d = 0, dims = t.dim(); d < dims; ++d) {
    size[3 - dims + d] = t.size(d), stride[3 - dims + d] = t.stride(d);
  }
  const auto* src = static_cast<const Word*>(t.const_data_ptr());
  auto* dst = static_cast<Word*>(out.mutable_data_ptr());
  for (int64_t i = 0; i < size[0]; ++i) {
    for (int64_t j = 0; j < size[1]; ++j) {
      const Word* row = src + i * stride[0] + j * stride[1];
      for (int64_t k = 0; k < size[2]; ++k) *dst++ = row[k * stride[2]];
    }
  }
}

// t.contiguous(), a small CPU tensor copied by a plain loop: the gradient autograd passes back
// through a sum() of the output is one value expanded (strides 0), and clone's TensorIterator
// costs more than the copy at one-step sizes.
at::Tensor contiguous(const at::Tensor& t) {
  const int64_t size = t.element_size();
  if (t.is_contiguous() || !t.is_cpu() || t.dim() > 3 || t.numel() > 65536 || t.is_neg() ||
      (size != 2 && size != 4 && size != 8)) {
    return t.contiguous();
  }
  at::Tensor out = empty(t.sizes(), t.options());
  if (size == 2) copy_strided<uint16_t>(t, out);
  if (size == 4) copy_strided<uint32_t>(t, out);
  if (size == 8) copy_strided<uint64_t>(t, out);
  return out;
}

OptMeta meta_of(const OptTensor& t) { return t ? OptMeta(TensorMeta::of(*t)) : std::nullopt; }

// Packed input: T, B, N and the rows of each step from batch_sizes (values known or not).
void check_packed(const StackMetas& stack, StackShape& s) {
  const TensorMeta& input = stack.input;
  TORCH_CHECK_VALUE(input.sizes.size() == 2,
                    "fastrnn: packed input must be 2-D [N, I], got shape ", input.sizes);
  const TensorMeta& bs = *stack.batch_sizes;
  // batch_sizes lives on the CPU whatever the input's device; a meta input may have meta ones
  const bool cpu_or_meta = bs.device.is_cpu() || (bs.device.is_meta() && input.device.is_meta());
  TORCH_CHECK(cpu_or_meta, "fastrnn: batch_sizes must be on the CPU, got ", bs.device,
              " (input is on ", input.device, ")");
  TORCH_CHECK_VALUE(bs.sizes.size() == 1 && bs.dtype == at::kLong,
                    "fastrnn: batch_sizes must be a 1-D int64 CPU tensor, got ", bs.dtype,
                    " of shape ", bs.sizes, " on ", bs.device);
  s.T = bs.sizes[0];
  TORCH_CHECK_VALUE(s.T >= 1, "fastrnn: batch_sizes must have at least one step");
  s.N = input.sizes[0], s.I = input.sizes[1];
  TORCH_CHECK_VALUE(stack.hx.has_value(), "fastrnn: packed input needs hx (zeros if none)");
  if (!stack.batch_size_values) {  // B from hx, whose shape is checked against it below
    TORCH_CHECK_VALUE(stack.hx->sizes.size() == 3, "fastrnn: hx must be 3-D [L*D, B, P], got ",
                      stack.hx->sizes);
    s.B = stack.hx->sizes[1];
    return;
  }
  s.batch_sizes = *stack.batch_size_values;
  TORCH_CHECK_VALUE(static_cast<int64_t>(s.batch_sizes.size()) == s.T,
                    "fastrnn: batch_sizes has ", s.batch_sizes.size(), " values for ", s.T,
                    " steps");
  s.B = s.batch_sizes[0];
  // Trailing steps without rows are accepted, as torch.nn does; the first step has a row.
  int64_t total = 0;
  for (int64_t t = 0; t < s.T; ++t) {
    const int64_t b = s.batch_sizes[t];
    TORCH_CHECK_VALUE(b >= (t == 0 ? 1 : 0) && (t == 0 || b <= s.batch_sizes[t - 1]),
                      "fastrnn: batch_sizes must be >= 1 and non-increasing (steps after the "
                      "first may have 0 rows), got ", c10::IntArrayRef(s.batch_sizes));
    s.offsets.push_back(total);
    total = size_add(total, b);
  }
  TORCH_CHECK_VALUE(total == s.N, "fastrnn: packed input has ", s.N,
                    " rows but batch_sizes sum to ", total);
}

// H: from weight_hh_l0 ([G*H, P]) where that is consistent in itself (P = H without a
// projection, proj_size with one), else from weight_ih_l0 ([G*H, I]); a wrong tensor is then
// the one the checks below name, with the H of the others.
int64_t hidden_size(const StackConfig& config, const std::vector<TensorMeta>& weights) {
  const int64_t G = config.gates;
  const auto per_gate = [G](const TensorMeta& w) -> int64_t {
    return w.sizes.size() == 2 && w.sizes[0] % G == 0 ? w.sizes[0] / G : -1;
  };
  const TensorMeta& w_hh0 = weights[1];
  const int64_t from_hh = per_gate(w_hh0);
  if (from_hh >= 0 && w_hh0.sizes[1] == (config.proj_size > 0 ? config.proj_size : from_hh)) {
    return from_hh;
  }
  const int64_t from_ih = per_gate(weights[0]);
  TORCH_CHECK_VALUE(from_ih >= 0 || from_hh >= 0, "fastrnn: weight_hh_l0 must be 2-D [G*H, P] "
                    "with G = ", G, " for mode '", config.mode(), "', got shape ", w_hh0.sizes);
  return from_ih >= 0 ? from_ih : from_hh;
}

}  // namespace

int64_t StackShape::reserve_width() const {
  return fastrnn::reserve_width(L, D, config.saved, H, P);
}

std::vector<int64_t> StackShape::output_shape(int64_t width) const {
  return packed ? std::vector<int64_t>{N, width} : std::vector<int64_t>{T, B, width};
}

StackShape check_stack(const StackConfig& config, const StackMetas& stack) {
  const TensorMeta& input = stack.input;
  const std::vector<TensorMeta>& weights = stack.weights;
  const std::string_view mode = config.mode();
  StackShape s;
  s.config = config;
  TORCH_CHECK_TYPE(input.dtype == at::kFloat || input.dtype == at::kDouble ||
                       input.dtype == at::kBFloat16 || input.dtype == at::kHalf,
                   "fastrnn: input must be float32, float64, bfloat16 or float16, got ",
                   input.dtype);
  s.L = config.num_layers, s.D = config.directions;
  s.project = config.proj_size > 0;
  s.weights_per_layer = 2 + (config.has_bias ? 2 : 0) + (s.project ? 1 : 0);
  const int64_t expected_weights = size_mul(size_mul(s.L, s.D), s.weights_per_layer);
  TORCH_CHECK_VALUE(static_cast<int64_t>(weights.size()) == expected_weights,
                    "fastrnn: expected ", expected_weights == INT64_MAX ? "over 2^63" :
                    std::to_string(expected_weights), " weight tensors (", s.weights_per_layer,
                    " for each of ", s.L, " layers x ", s.D, " directions), got ",
                    weights.size());
  // every tensor on the input's device, before anything reads a shape
  for (size_t k = 0; k < weights.size(); ++k) {
    const int64_t ld = static_cast<int64_t>(k) / s.weights_per_layer;
    const TensorName name{"weights", ld / s.D, ld % s.D, static_cast<int64_t>(k)};
    check_device(weights[k], name, input);
  }
  for (const auto& [t, name] : {std::pair{&stack.hx, "hx"}, {&stack.cx, "cx"},
                                {&stack.dropout_masks, "dropout_masks"}}) {
    if (*t) check_device(**t, name, input);
  }

  s.packed = stack.batch_sizes.has_value();
  if (s.packed) {
    check_packed(stack, s);
  } else {
    TORCH_CHECK_VALUE(input.sizes.size() == 3, "fastrnn: input must be 3-D [T, B, I], got ",
                      input.sizes.size(), "-D with shape ", input.sizes);
    s.T = input.sizes[0], s.B = input.sizes[1], s.I = input.sizes[2];
    s.N = size_mul(s.T, s.B);
    TORCH_CHECK_VALUE(s.T >= 1, "fastrnn: input must have at least one time step (T >= 1), got T = ",
                      s.T);
  }

  s.H = hidden_size(config, weights);
  s.P = s.project ? config.proj_size : s.H;
  TORCH_CHECK_VALUE(!s.project || config.proj_size < s.H, "fastrnn: proj_size (",
                    config.proj_size, ") must be smaller than the hidden size (", s.H, ")");
  TORCH_CHECK_VALUE(s.B >= 1 && s.I >= 1 && s.H >= 1,
                    "fastrnn: batch, input and hidden sizes must be >= 1, got B = ", s.B,
                    ", I = ", s.I, ", H = ", s.H);
  const int64_t GH = size_mul(s.G(), s.H), DP = size_mul(s.D, s.P);
  // the BLAS indexes with 32-bit integers; every product the kernels form is below these
  TORCH_CHECK_VALUE(s.N <= INT_MAX && size_mul(GH, std::max({s.I, s.H, DP})) <= INT_MAX &&
                        size_mul(s.N, std::max({GH, s.I, DP})) <= INT_MAX,
                    "fastrnn: sizes N = ", s.N, ", I = ", s.I, ", H = ", s.H,
                    " exceed the 32-bit index range of the BLAS");
  if (!s.packed) {
    s.batch_sizes.assign(s.T, s.B);
    for (int64_t t = 0; t < s.T; ++t) s.offsets.push_back(t * s.B);
  }

  for (int64_t l = 0; l < s.L; ++l) {
    for (int64_t d = 0; d < s.D; ++d) {
      int64_t k = (l * s.D + d) * s.weights_per_layer;  // w_ih, w_hh, [b_ih, b_hh], [w_hr]
      const int64_t I_l = l == 0 ? s.I : DP;
      const TensorMeta& w_ih = weights[k];
      TORCH_CHECK_VALUE(w_ih.sizes.size() == 2 && w_ih.sizes[0] == GH,
                        "fastrnn: ", TensorName("weight_ih", l, d), " must have shape [G*H, ",
                        l == 0 ? "I" : "D*P", "] = [", GH, ", ", I_l, "] for mode '", mode,
                        "' with H = ", s.H, ", got ", w_ih.sizes);
      if (l == 0) {
        TORCH_CHECK_VALUE(w_ih.sizes[1] == I_l, "fastrnn: input has I = ", I_l,
                          " features but weight_ih_l0", d == 1 ? "_reverse" : "", " expects ",
                          w_ih.sizes[1]);
      } else {
        TORCH_CHECK_VALUE(w_ih.sizes[1] == I_l, "fastrnn: ", TensorName("weight_ih", l, d),
                          " must have D*P = ", I_l, " columns (layer ", l - 1,
                          "'s output), got ", w_ih.sizes[1]);
      }
      check_tensor(w_ih, TensorName("weight_ih", l, d), input, {GH, I_l});
      check_tensor(weights[k + 1], TensorName("weight_hh", l, d), input, {GH, s.P});
      k += 2;
      if (config.has_bias) {
        check_tensor(weights[k], TensorName("bias_ih", l, d), input, {GH});
        check_tensor(weights[k + 1], TensorName("bias_hh", l, d), input, {GH});
        k += 2;
      }
      if (s.project) check_tensor(weights[k], TensorName("weight_hr", l, d), input, {s.P, s.H});
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
  if (stack.norms_probe) {
    const TensorMeta& probe = *stack.norms_probe;
    check_device(probe, "norms_probe", input);
    TORCH_CHECK_TYPE(probe.dtype == at::kFloat,
                     "fastrnn: norms_probe must be float32, got ", probe.dtype);
    TORCH_CHECK_VALUE(probe.sizes == at::IntArrayRef({2, s.L * s.D, s.T}),
                      "fastrnn: norms_probe must have shape [2, L*D, T] = [2, ", s.L * s.D, ", ",
                      s.T, "], got ", probe.sizes);
  }
  // what a training forward saves: N x reserve_width elements
  TORCH_CHECK_VALUE(size_mul(s.N, size_add(size_mul(size_mul(s.L * s.D, s.config.saved), s.H),
                                           size_mul((s.L - 1) * s.D, s.P))) < INT64_MAX,
                    "fastrnn: the reserve of ", s.L, " layers with N = ", s.N, ", H = ", s.H,
                    " exceeds the int64 index range");
  return s;
}

StackShape check_stack(const StackConfig& config, const StackTensors& stack,
                       const OptTensor& norms_probe) {
  StackMetas m{TensorMeta::of(stack.input), meta_of(stack.batch_sizes), std::nullopt,
               meta_of(stack.hx), meta_of(stack.cx), {}, meta_of(stack.dropout_masks),
               meta_of(norms_probe)};
  m.weights.reserve(stack.weights.size());
  for (const at::Tensor& w : stack.weights) m.weights.push_back(TensorMeta::of(w));
  const OptTensor& bs = stack.batch_sizes;
  if (bs && bs->device().is_cpu() && bs->dim() == 1 && bs->scalar_type() == at::kLong) {
    const at::Tensor bsc = bs->contiguous();
    m.batch_size_values.emplace(bsc.const_data_ptr<int64_t>(),
                                bsc.const_data_ptr<int64_t>() + bsc.numel());
  }
  return check_stack(config, m);
}

void check_backward(const StackShape& s, const TensorMeta& input, const BackwardMetas& b) {
  const auto out_shape = s.output_shape(s.D * s.P);
  check_tensor(b.output, "output", input, out_shape);
  check_device(b.reserve, "reserve", input);
  TORCH_CHECK_VALUE(b.reserve.sizes.size() == 2,
                    "fastrnn: backward needs the reserve of a forward with training=True");
  check_tensor(b.reserve, "reserve", input, {s.N, s.reserve_width()});
  if (b.grad_output) check_tensor(*b.grad_output, "grad_output", input, out_shape);
  if (b.grad_h_n) check_tensor(*b.grad_h_n, "grad_h_n", input, s.state_shape(s.P));
  if (s.config.lstm() && b.grad_c_n) {
    check_tensor(*b.grad_c_n, "grad_c_n", input, s.state_shape(s.H));
  }
}

StackInputs::StackInputs(const StackShape& s, const StackTensors& stack) {
  x = stack.input.reshape({s.N, s.I});  // a view unless the layout cannot be one
  if (!((s.I == 1 || x.stride(1) == 1) && (s.N == 1 || x.stride(0) >= s.I))) x = x.contiguous();
  ldx = s.N == 1 ? s.I : x.stride(0);
  const auto options = stack.input.options();
  hx = stack.hx ? stack.hx->contiguous() : zeros(s.state_shape(s.P), options);
  hx_zero = !stack.hx;
  if (s.config.lstm()) {
    cx = stack.cx ? stack.cx->contiguous() : zeros(s.state_shape(s.H), options);
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
    lw[k].w_ih = data<scalar_t>(w[0]);
    lw[k].w_hh = data<scalar_t>(w[1]);
    if (s.config.has_bias) {
      lw[k].b_ih = data<scalar_t>(w[2]);
      lw[k].b_hh = data<scalar_t>(w[3]);
    }
    if (s.project) lw[k].w_hr = data<scalar_t>(w[s.config.has_bias ? 4 : 2]);
  }
  RnnParams<scalar_t> p;
  p.cell = s.config.cell;
  p.options = s.config.options;
  p.T = s.T, p.B = s.B, p.N = s.N, p.I = s.I, p.H = s.H, p.P = s.P, p.L = s.L, p.D = s.D;
  p.batch_sizes = s.batch_sizes.data();
  p.offsets = s.offsets.data();
  p.x = data<scalar_t>(x);
  p.ldx = ldx;
  p.hx = data<scalar_t>(hx);
  p.hx_zero = hx_zero;
  p.cx = ptr_or_null<scalar_t>(cx);
  p.weights = lw.data();
  p.dropout_masks = ptr_or_null<scalar_t>(dropout_masks);
  return p;
}

StackOutputs::StackOutputs(const StackShape& s, bool training, const at::TensorOptions& options) {
  output = empty(s.output_shape(s.D * s.P), options);
  h_n = empty(s.state_shape(s.P), options);
  c_n = s.config.lstm() ? empty(s.state_shape(s.H), options) : empty0(options);
  reserve = training ? reserve_empty({s.N, s.reserve_width()}, options) : empty0(options);
}

template <typename scalar_t>
void StackOutputs::fill(RnnParams<scalar_t>& p) const {
  p.output = mutable_data<scalar_t>(output);
  p.h_n = mutable_data<scalar_t>(h_n);
  p.c_n = mutable_ptr_or_null<scalar_t>(c_n);
  p.reserve = mutable_ptr_or_null<scalar_t>(reserve);
}

StackGrads::StackGrads(const StackShape& s, const RnnBackwardArgs& a, const StackInputs& in) {
  const at::Tensor& input = a.stack.input;
  check_backward(s, TensorMeta::of(input),
                 {TensorMeta::of(a.output), TensorMeta::of(a.reserve), meta_of(a.grad_output),
                  meta_of(a.grad_h_n), meta_of(a.grad_c_n)});
  const auto dense = [](const OptTensor& g) { return g ? contiguous(*g) : at::Tensor(); };
  grad_output = dense(a.grad_output);
  grad_h_n = dense(a.grad_h_n);
  if (s.config.lstm()) grad_c_n = dense(a.grad_c_n);
  output = a.output.contiguous();
  reserve = a.reserve.contiguous();
  // A gradient nobody wants is an empty tensor, and the work only it needs is skipped.
  const auto options = input.options();
  grad_input = a.input_needs_grad ? empty(s.output_shape(s.I), options) : empty0(options);
  grad_hx = a.hx_needs_grad ? empty(s.state_shape(s.P), options) : empty0(options);
  grad_cx = s.config.lstm() ? empty(s.state_shape(s.H), options) : empty0(options);
  for (const at::Tensor& w : in.weights) grad_weights.push_back(empty(w.sizes(), w.options()));
  grad_norms = a.record_norms ? zeros({2, s.L * s.D, s.T}, options.dtype(at::kFloat))
                              : empty0(options.dtype(at::kFloat));
}

template <typename scalar_t>
void StackGrads::fill(RnnGradParams<scalar_t>& p, std::vector<LayerGrads<scalar_t>>& lg) const {
  const int64_t layers = p.fwd.L * p.fwd.D;
  const int64_t per_layer = static_cast<int64_t>(grad_weights.size()) / layers;
  const bool has_bias = p.fwd.weights[0].b_ih != nullptr;
  lg.assign(layers, {});
  for (int64_t k = 0; k < layers; ++k) {
    const at::Tensor* g = grad_weights.data() + k * per_layer;
    lg[k].w_ih = mutable_data<scalar_t>(g[0]);
    lg[k].w_hh = mutable_data<scalar_t>(g[1]);
    if (has_bias) {
      lg[k].b_ih = mutable_data<scalar_t>(g[2]);
      lg[k].b_hh = mutable_data<scalar_t>(g[3]);
    }
    if (p.fwd.weights[0].w_hr) lg[k].w_hr = mutable_data<scalar_t>(g[has_bias ? 4 : 2]);
  }
  p.fwd.output = const_cast<scalar_t*>(data<scalar_t>(output));  // read only
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
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn
