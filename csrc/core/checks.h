// The device-neutral half of the torch glue: the checks of a stack op's arguments (shared by
// every device's kernel), the layout of what the kernels read (StackInputs) and write
// (StackOutputs, StackGrads), and the fill of the params struct (core/params.h) from them.
// A device's kernel is then: check_stack, StackInputs, allocate, fill, run its drivers.
//
// The checks read only what TensorMeta holds of each tensor (sizes, dtype, device), so the fake
// kernels (python/fastrnn/ops.py) run the same checks, through the pybind module, on the example
// sizes of their FakeTensors: one implementation for every device and for the fakes.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/op_args.h"
#include "core/params.h"

namespace fastrnn {

// The sizes a call's arguments fix, checked against each other (names as in core/params.h).
struct StackShape {
  StackConfig config;
  int64_t T, B, N, I, H, P, L, D;
  bool packed, project;
  int64_t weights_per_layer;  // tensors per (layer, direction) in the weights list
  std::vector<int64_t> batch_sizes, offsets;

  int64_t G() const { return config.gates; }
  int64_t reserve_width() const;
  std::vector<int64_t> output_shape(int64_t width) const;  // [T, B, width] or [N, width]
  std::vector<int64_t> state_shape(int64_t width) const { return {L * D, B, width}; }
};

// What the checks read of one tensor.
struct TensorMeta {
  c10::IntArrayRef sizes;
  at::ScalarType dtype;
  at::Device device;
  static TensorMeta of(const at::Tensor& t) { return {t.sizes(), t.scalar_type(), t.device()}; }
};
using OptMeta = std::optional<TensorMeta>;

// StackTensors (core/op_args.h) as the checks read them.
struct StackMetas {
  TensorMeta input;
  OptMeta batch_sizes;
  // batch_sizes' values, absent where they are unknown (a fake kernel's FakeTensor, a meta
  // tensor): B is then hx's, and the checks of the values are left to the real kernel
  std::optional<std::vector<int64_t>> batch_size_values;
  OptMeta hx, cx;
  std::vector<TensorMeta> weights;
  OptMeta dropout_masks;
  OptMeta norms_probe;  // the forward's (RnnArgs), checked when given
};

// The backward's tensors besides the stack, as the checks read them.
struct BackwardMetas {
  TensorMeta output, reserve;
  OptMeta grad_output, grad_h_n, grad_c_n;
};

// Raises ValueError/TypeError/RuntimeError naming the offending tensor or size. Every size
// product is computed without overflow (a product beyond int64 compares as too large).
StackShape check_stack(const StackConfig& config, const StackMetas& stack);
StackShape check_stack(const StackConfig& config, const StackTensors& stack,
                       const OptTensor& norms_probe = std::nullopt);
// The backward's own arguments, for a stack that passed check_stack.
void check_backward(const StackShape& s, const TensorMeta& input, const BackwardMetas& b);

// What the kernels read, laid out as they want it: x with a unit stride along I (a view of the
// input where it can be), hx (and cx) zeros when absent, the rest contiguous.
struct StackInputs {
  at::Tensor x;
  int64_t ldx;
  at::Tensor hx, cx, dropout_masks;
  bool hx_zero;  // hx was absent: these zeros
  std::vector<at::Tensor> weights;

  StackInputs(const StackShape& s, const StackTensors& stack);

  // params' pointers into these tensors; `weights` (L*D entries) must outlive the params
  template <typename scalar_t>
  RnnParams<scalar_t> params(const StackShape& s,
                             std::vector<LayerWeights<scalar_t>>& weights) const;
};

// The forward's results, allocated for the shape.
struct StackOutputs {
  at::Tensor output, h_n, c_n, reserve;  // c_n, reserve: [0] where absent

  StackOutputs(const StackShape& s, bool training, const at::TensorOptions& options);
  template <typename scalar_t>
  void fill(RnnParams<scalar_t>& p) const;
  RnnResult result() const { return {output, h_n, c_n, reserve}; }
};

// The backward's gradients and what it reads besides the inputs, checked and allocated.
struct StackGrads {
  at::Tensor grad_output, grad_h_n, grad_c_n;  // contiguous, or undefined for zero
  at::Tensor output, reserve;                  // contiguous
  at::Tensor grad_input, grad_hx, grad_cx;     // [0] where not wanted (or not LSTM)
  std::vector<at::Tensor> grad_weights;
  at::Tensor grad_norms;  // float32 [2, L*D, T] zeros when recording, else [0]

  StackGrads(const StackShape& s, const RnnBackwardArgs& args, const StackInputs& in);
  // fills p.fwd's output and reserve and every gradient pointer; `grads` must outlive p
  template <typename scalar_t>
  void fill(RnnGradParams<scalar_t>& p, std::vector<LayerGrads<scalar_t>>& grads) const;
  RnnBackwardResult result() const {
    return {grad_input, grad_hx, grad_cx, grad_weights, grad_norms};
  }
};

// The dtypes the ops take, and the kernels' type for each (cells/half.h: the kernels know
// nothing of c10's 16-bit types, which have the same layout).
#define FASTRNN_DISPATCH_TYPES(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, name, __VA_ARGS__)

template <typename AtType>
struct KernelTypeOf {
  using type = AtType;
};
template <>
struct KernelTypeOf<at::BFloat16> {
  using type = bfloat16;
};
template <>
struct KernelTypeOf<at::Half> {
  using type = float16;
};
template <typename AtType>
using KernelType = typename KernelTypeOf<AtType>::type;

// A device's kernels of the two ops: the checks, the layout, the allocation and the params fill,
// then run(params) with the params of the input's dtype (run: a generic lambda calling the
// device's drivers).
template <class Run>
RnnResult run_forward(const RnnArgs& a, Run&& run) {
  const StackShape s = check_stack(a.config, a.stack, a.norms_probe);
  const StackInputs in(s, a.stack);
  const StackOutputs out(s, a.training, a.stack.input.options());
  FASTRNN_DISPATCH_TYPES(a.stack.input.scalar_type(), "fastrnn::rnn", [&] {
    using T = KernelType<scalar_t>;
    std::vector<LayerWeights<T>> weights;
    RnnParams<T> p = in.params<T>(s, weights);
    out.fill(p);
    run(p);
  });
  return out.result();
}

template <class Run>
RnnBackwardResult run_backward(const RnnBackwardArgs& a, Run&& run) {
  const StackShape s = check_stack(a.config, a.stack);
  const StackInputs in(s, a.stack);
  const StackGrads out(s, a, in);
  FASTRNN_DISPATCH_TYPES(a.stack.input.scalar_type(), "fastrnn::rnn_backward", [&] {
    using T = KernelType<scalar_t>;
    std::vector<LayerWeights<T>> weights;
    std::vector<LayerGrads<T>> grads;
    RnnGradParams<T> p;
    p.fwd = in.params<T>(s, weights);
    out.fill(p, grads);
    run(p);
  });
  return out.result();
}

}  // namespace fastrnn
