#include "core/op_args.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/util/Exception.h>

#include <typeinfo>

namespace fastrnn {

std::string_view StackConfig::mode() const {
  for (const Mode& m : kModes) {
    if (m.kind == cell) return m.name;
  }
  return {};
}

namespace {

CellKind cell_of(std::string_view mode) {
  for (const Mode& m : kModes) {
    if (m.name == mode) return m.kind;
  }
  std::string names;
  for (const Mode& m : kModes) names += (names.empty() ? "'" : ", '") + std::string(m.name) + "'";
  TORCH_CHECK_VALUE(false, "fastrnn: mode must be one of ", names, ", got '", mode, "'");
}

}  // namespace

std::pair<int64_t, int64_t> cell_shape(std::string_view mode) {
  return visit_cell(cell_of(mode), [](auto cell) {
    using Cell = decltype(cell);
    return std::pair<int64_t, int64_t>{Cell::kGates, Cell::kSaved};
  });
}

StackConfig make_config(std::string_view mode, bool has_bias, int64_t num_layers,
                        bool bidirectional, int64_t proj_size, const CellOptions& options) {
  StackConfig c;
  c.cell = cell_of(mode);
  std::tie(c.gates, c.saved) = cell_shape(mode);
  TORCH_CHECK_VALUE(num_layers >= 1, "fastrnn: num_layers must be >= 1, got ", num_layers);
  TORCH_CHECK_VALUE(proj_size >= 0, "fastrnn: proj_size must be >= 0, got ", proj_size);
  TORCH_CHECK_VALUE(proj_size == 0 || c.lstm(), "fastrnn: proj_size is only for mode 'lstm', not '",
                    mode, "'");
  c.has_bias = has_bias;
  c.num_layers = num_layers;
  c.directions = bidirectional ? 2 : 1;
  c.proj_size = proj_size;
  // each option's own check (NaN fails every comparison)
  TORCH_CHECK_VALUE(options.grad_clip > 0, "fastrnn: grad_clip must be > 0 (or None), got ",
                    options.grad_clip);
  TORCH_CHECK_VALUE(options.cell_clip > 0, "fastrnn: cell_clip must be > 0 (or None), got ",
                    options.cell_clip);
  TORCH_CHECK_VALUE(options.cell_clip == kUnclipped || c.lstm(),
                    "fastrnn: cell_clip is only for mode 'lstm', not '", mode, "'");
  c.options = options;
  return c;
}

RnnResult call_rnn(const RnnArgs& a) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::rnn", "")
                             .typed<decltype(rnn_kernel<nullptr>)>();
  const StackConfig& config = a.config;
  const StackTensors& s = a.stack;
  return op.call(std::string(config.mode()), s.input, s.batch_sizes, s.hx, s.cx, s.weights,
                 config.has_bias, config.num_layers, config.directions == 2, config.proj_size,
                 s.dropout_masks, a.training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_TO_ARG),
                 a.norms_probe);
}

RnnBackwardResult call_rnn_backward(const RnnBackwardArgs& a) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::rnn_backward", "")
                             .typed<decltype(rnn_backward_kernel<nullptr>)>();
  const StackConfig& config = a.config;
  const StackTensors& s = a.stack;
  return op.call(std::string(config.mode()), a.grad_output, a.grad_h_n, a.grad_c_n, s.input,
                 s.batch_sizes, s.hx, s.cx, s.weights, config.has_bias, config.num_layers,
                 config.directions == 2, config.proj_size, s.dropout_masks, a.output, a.reserve,
                 a.input_needs_grad, a.hx_needs_grad FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_TO_ARG),
                 a.record_norms);
}

CellResult call_cell(const std::string& mode, const at::Tensor& input, const OptTensor& hx,
                     const OptTensor& cx, const std::vector<at::Tensor>& weights, bool has_bias,
                     bool training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PARAM)) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::cell", "")
                             .typed<decltype(cell_kernel<nullptr>)>();
  return op.call(mode, input, hx, cx, weights, has_bias,
                 training FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_NAME));
}

namespace {

// The cell glue's [1, ...] views of [B, .] tensors and back, made as the dispatcher's unsqueeze
// and squeeze make them below autograd (a TensorImpl on the same storage, no version counter of
// its own), but directly: through the dispatcher each cost ~2k instructions, and a one-step
// training call makes five. Only where the dispatcher would make the same: for a plain tensor
// (a subclass or wrapper, fake, functional or batched, has kernels of its own) below autograd
// (where a backward records a graph, its views must be autograd's).
bool plain(const at::Tensor& t) {
  return typeid(*t.unsafeGetTensorImpl()) == typeid(c10::TensorImpl) &&
         !t.key_set().has_any(c10::python_ks) &&
         (!t.key_set().has(c10::DispatchKey::ADInplaceOrView) ||
          c10::impl::tls_is_dispatch_key_excluded(c10::DispatchKey::ADInplaceOrView));
}

at::Tensor restrided(const at::Tensor& t, at::IntArrayRef sizes, at::IntArrayRef strides) {
  auto impl = c10::make_intrusive<c10::TensorImpl>(c10::TensorImpl::VIEW,
                                                   c10::Storage(t.storage()), t.key_set(),
                                                   t.dtype());
  impl->set_sizes_and_strides(sizes, strides, t.storage_offset());
  return at::Tensor(std::move(impl));
}

// t as one step: [B, .] -> [1, B, .]
at::Tensor as_step(const at::Tensor& t) {
  if (!plain(t) || t.dim() != 2) return t.unsqueeze(0);
  const int64_t sizes[] = {1, t.size(0), t.size(1)};
  const int64_t strides[] = {t.size(0) * t.stride(0), t.stride(0), t.stride(1)};
  return restrided(t, sizes, strides);
}

// a step's tensor without its step dimension: [1, B, .] -> [B, .]
at::Tensor of_step(const at::Tensor& t) {
  if (!plain(t) || t.dim() != 3 || t.size(0) != 1) return t.squeeze(0);
  return restrided(t, t.sizes().slice(1), t.strides().slice(1));
}

}  // namespace

OptTensor as_step(const OptTensor& t) { return t ? OptTensor(as_step(*t)) : t; }

at::Tensor of_step_or_undefined(const at::Tensor& t) { return t.defined() ? of_step(t) : t; }

StackTensors cell_stack(const CellArgs& a) {
  const auto check_2d = [](const at::Tensor& t, const char* name, const char* shape) {
    TORCH_CHECK_VALUE(t.dim() == 2, "fastrnn: the cell op's ", name, " must be ", shape,
                      " (2-D), got ", t.dim(), "-D of shape ", t.sizes());
  };
  check_2d(a.input, "input", "[B, I]");
  if (a.hx) check_2d(*a.hx, "hx", "[B, H]");
  if (a.cx) check_2d(*a.cx, "cx", "[B, H]");
  return StackTensors{as_step(a.input), std::nullopt, as_step(a.hx), as_step(a.cx), a.weights,
                      std::nullopt};
}

CellResult cell_result(const StackConfig& config, const RnnResult& stack) {
  const auto& [output, h_n, c_n, reserve] = stack;
  return {of_step(h_n), config.lstm() ? of_step(c_n) : c_n, reserve};
}

CellResult cell_through_stack(const CellArgs& a) {
  return cell_result(a.config,
                     call_rnn(RnnArgs{a.config, cell_stack(a), a.training, std::nullopt}));
}

// The precision torch's own CUDA matmuls resolve to. Not Context::allowTF32CuBLAS(): in torch
// 2.13/2.14 it raises where a program set TF32 through the new fp32_precision API only (its
// check that the legacy and the new flag agree); the legacy setter sets this one too.
bool allow_tf32() {
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
         at::Float32Precision::TF32;
}

}  // namespace fastrnn
