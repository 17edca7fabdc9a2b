// The arguments of the two stack ops (schemas in ops.cpp, contract in docs/stack-op.md) as
// structs: every kernel (per device, autograd) takes these, and the positional argument lists
// of the schemas appear once each, in rnn_kernel / rnn_backward_kernel (into the structs) and
// call_rnn / call_rnn_backward (out of them, through the dispatcher).
//
// The cells' options (cells/options.h) are the ops' trailing arguments, generated from their
// list by the FASTRNN_OPTION_* macros below: a new option touches none of these lists.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "cells/cells.h"

namespace fastrnn {

using OptTensor = std::optional<at::Tensor>;

// What the non-tensor arguments of a stack op fix, parsed and checked once (make_config).
struct StackConfig {
  CellKind cell = CellKind::kLstm;
  int64_t gates = 0;  // G
  int64_t saved = 0;  // S: values the cell saves per row, in units of H
  bool has_bias = true;
  int64_t num_layers = 1;  // L
  int64_t directions = 1;  // D
  int64_t proj_size = 0;   // 0: no projection
  CellOptions options;     // the cells' options, off unless given

  std::string_view mode() const;  // the op's name of the cell, e.g. "lstm"
  bool lstm() const { return cell == CellKind::kLstm; }
};

// Each option as its op argument: `float? name=None` in the schemas, std::optional<double> in
// C++ (None: the value meaning off).
#define FASTRNN_OPTION_SCHEMA(name, off) ", float? " #name "=None"
#define FASTRNN_OPTION_PARAM(name, off) , const std::optional<double>&name
#define FASTRNN_OPTION_FROM_ARG(name, off) options.name = name.value_or(off);
#define FASTRNN_OPTION_NAME(name, off) , name
#define FASTRNN_OPTION_TO_ARG(name, off) \
  , config.options.name == (off) ? std::nullopt : std::optional<double>(config.options.name)
// The options' arguments of a call, in their order.
#define FASTRNN_OPTIONS_SCHEMA FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_SCHEMA)

// Raises a ValueError naming the bad argument.
StackConfig make_config(std::string_view mode, bool has_bias, int64_t num_layers,
                        bool bidirectional, int64_t proj_size, const CellOptions& options);

// (G, S) of a mode: gates, and values saved for backward per row in units of H.
std::pair<int64_t, int64_t> cell_shape(std::string_view mode);

// The tensors that describe a stack's input and parameters.
struct StackTensors {
  at::Tensor input;     // padded [T, B, I] or packed [N, I]
  OptTensor batch_sizes;  // [T] int64 CPU (packed input)
  OptTensor hx;         // [L*D, B, P]
  OptTensor cx;         // [L*D, B, H], LSTM
  at::TensorList weights;  // torch.nn's _flat_weights order
  OptTensor dropout_masks;  // [L-1, T, B, D*P] or [L-1, N, D*P]
};

struct RnnArgs {
  StackConfig config;
  StackTensors stack;
  bool training;  // save the reserve for backward
  // [2, L*D, T] float32 or absent: a probe whose gradient is the gradient norms backward
  // records (RnnBackwardResult's grad_norms); forward does not read it
  OptTensor norms_probe;
};
// (output, h_n, c_n, reserve)
using RnnResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct RnnBackwardArgs {
  StackConfig config;
  StackTensors stack;
  OptTensor grad_output, grad_h_n, grad_c_n;  // absent: zero
  at::Tensor output, reserve;                 // of the training forward
  bool input_needs_grad, hx_needs_grad;       // false: skip the products only that one needs
  bool record_norms;                          // return grad_norms
};
// (grad_input, grad_hx, grad_cx, grad_weights, grad_norms): grad_norms [2, L*D, T] float32,
// ||dL/dh_t|| then (LSTM) ||dL/dc_t|| of each layer and direction at each step, or [0]
using RnnBackwardResult =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, at::Tensor>;

// A kernel taking the struct, with the op's positional signature for registration
// (m.impl("rnn", &rnn_kernel<&my_kernel>)).
template <RnnResult (*kernel)(const RnnArgs&)>
RnnResult rnn_kernel(const std::string& mode, const at::Tensor& input,
                     const OptTensor& batch_sizes, const OptTensor& hx, const OptTensor& cx,
                     at::TensorList weights, bool has_bias, int64_t num_layers,
                     bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
                     bool training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PARAM),
                     const OptTensor& norms_probe) {
  CellOptions options;
  FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_FROM_ARG)
  return kernel(
      RnnArgs{make_config(mode, has_bias, num_layers, bidirectional, proj_size, options),
              StackTensors{input, batch_sizes, hx, cx, weights, dropout_masks}, training,
              norms_probe});
}

template <RnnBackwardResult (*kernel)(const RnnBackwardArgs&)>
RnnBackwardResult rnn_backward_kernel(
    const std::string& mode, const OptTensor& grad_output, const OptTensor& grad_h_n,
    const OptTensor& grad_c_n, const at::Tensor& input, const OptTensor& batch_sizes,
    const OptTensor& hx, const OptTensor& cx, at::TensorList weights, bool has_bias,
    int64_t num_layers, bool bidirectional, int64_t proj_size, const OptTensor& dropout_masks,
    const at::Tensor& output, const at::Tensor& reserve, bool input_needs_grad,
    bool hx_needs_grad FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PARAM), bool record_norms) {
  CellOptions options;
  FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_FROM_ARG)
  return kernel(RnnBackwardArgs{
      make_config(mode, has_bias, num_layers, bidirectional, proj_size, options),
      StackTensors{input, batch_sizes, hx, cx, weights, dropout_masks}, grad_output, grad_h_n,
      grad_c_n, output, reserve, input_needs_grad, hx_needs_grad, record_norms});
}

// The cell op (schema in ops.cpp): one step of one layer in one direction on [B, I] input and
// [B, H] states, for the cells' per-step calls. It is the stack op on [1, B, .] views made below
// autograd: made in Python, the views were nodes of the graph (docs/stack-op.md, "The cell op").
struct CellArgs {
  StackConfig config;  // one layer, one direction, no projection
  at::Tensor input;    // [B, I]
  OptTensor hx, cx;    // [B, H]
  at::TensorList weights;
  bool training;
};

// (h, c, reserve): h [B, H], c [B, H] (LSTM) or [0], reserve as the stack op's
using CellResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

template <CellResult (*kernel)(const CellArgs&)>
CellResult cell_kernel(const std::string& mode, const at::Tensor& input, const OptTensor& hx,
                       const OptTensor& cx, at::TensorList weights, bool has_bias,
                       bool training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PARAM)) {
  CellOptions options;
  FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_FROM_ARG)
  return kernel(CellArgs{make_config(mode, has_bias, 1, false, 0, options), input, hx, cx,
                         weights, training});
}

// The cell op through the dispatcher, from C++: the cells' fast path calls it through the
// extension (_C.cell), whose arguments pybind11 converts directly, where torch.ops.fastrnn.cell
// first boxes each one against the schema.
CellResult call_cell(const std::string& mode, const at::Tensor& input, const OptTensor& hx,
                     const OptTensor& cx, const std::vector<at::Tensor>& weights, bool has_bias,
                     bool training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PARAM));

// A cell's [B, .] tensor as the stack op's one step, [1, B, .], and (of an undefined tensor:
// undefined) a step's [1, B, .] result as the cell's [B, .]: views, below autograd only.
OptTensor as_step(const OptTensor& t);
at::Tensor of_step_or_undefined(const at::Tensor& t);

// The stack op's tensors of a cell call: input, hx and cx as [1, B, .] views (checked 2-D).
StackTensors cell_stack(const CellArgs& a);

// The cell op's results from the stack op's on cell_stack's views: h_n and c_n as [B, H].
CellResult cell_result(const StackConfig& config, const RnnResult& stack);

// The cell op of every device: the stack op on cell_stack's views.
CellResult cell_through_stack(const CellArgs& a);

// The ops through the dispatcher (from the autograd kernels, below autograd).
RnnResult call_rnn(const RnnArgs& args);
RnnBackwardResult call_rnn_backward(const RnnBackwardArgs& args);

// Whether torch lets float32 CUDA matmuls use TF32 (torch.backends.cuda.matmul.allow_tf32, or
// fp32_precision "tf32"): the CUDA drivers' persistent products follow it (cuda/plan.h).
bool allow_tf32();

}  // namespace fastrnn
