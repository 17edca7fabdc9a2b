// Autograd of the stack ops, in C++ (registered for the Autograd key): as a Python autograd
// function the bookkeeping of one training call cost more than the whole forward and backward of
// a small layer (flattening the arguments, Python frames: ~0.5 ms a call).
#include <torch/autograd.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "core/op_args.h"

namespace fastrnn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

OptTensor optional(const at::Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }

// Contiguous once in forward, and saved so, for backward to copy nothing again (a no-op for the
// contiguous tensors of a module).
OptTensor contiguous(const OptTensor& t) { return t ? OptTensor(t->contiguous()) : t; }
std::vector<at::Tensor> contiguous(at::TensorList tensors) {
  std::vector<at::Tensor> result;
  result.reserve(tensors.size());
  for (const at::Tensor& t : tensors) result.push_back(t.contiguous());
  return result;
}

// Where a backward calls rnn_backward: below autograd, unless it records a graph (create_graph),
// where rnn_backward's autograd must see the call to refuse a double backward. (Through its
// autograd every backward paid for a Function's bookkeeping: ~3 us of a cell's step.)
struct BelowAutogradUnlessRecording {
  std::optional<at::AutoDispatchBelowADInplaceOrView> guard;
  BelowAutogradUnlessRecording() {
    if (!at::GradMode::is_enabled()) guard.emplace();
  }
};

// What backward needs besides tensors, saved as a whole.
struct SavedCall : torch::CustomClassHolder {
  StackConfig config;
  bool training = false;
  bool has_cx = false;
  bool input_needs_grad = false;  // dL/dx and dL/dh0 each cost products of their own
  bool hx_needs_grad = false;
  bool record_norms = false;  // a norms_probe was given: its gradient is backward's grad_norms
};

// The tensors backward reads, in one fixed order through save_for_backward (which checks that
// nothing modified them in place meanwhile); the weights last, as many as there are.
struct SavedTensors {
  at::Tensor input, batch_sizes, hx, cx, dropout_masks, output, reserve;
  std::vector<at::Tensor> weights;

  std::vector<at::Tensor> list() const {
    std::vector<at::Tensor> all = {input, batch_sizes, hx, cx, dropout_masks, output, reserve};
    all.insert(all.end(), weights.begin(), weights.end());
    return all;
  }
  static SavedTensors from_list(const std::vector<at::Tensor>& all) {
    SavedTensors s{all[0], all[1], all[2], all[3], all[4], all[5], all[6], {}};
    s.weights.assign(all.begin() + 7, all.end());
    return s;
  }
};

// What both forwards keep for backward: the call, the tensors (checked unmodified when read),
// the reserve marked as no derivative's.
void save_call(AutogradContext* ctx, const StackConfig& config, bool training,
               const at::Tensor& input, const OptTensor& hx, bool has_cx, bool record_norms,
               const SavedTensors& tensors) {
  auto saved = c10::make_intrusive<SavedCall>();
  saved->config = config;
  saved->training = training;
  saved->has_cx = has_cx;
  saved->input_needs_grad = input.requires_grad();
  saved->hx_needs_grad = hx.has_value() && hx->requires_grad();
  saved->record_norms = record_norms;
  ctx->saved_data["call"] = c10::IValue::make_capsule(std::move(saved));
  ctx->save_for_backward(tensors.list());
  ctx->mark_non_differentiable({tensors.reserve});
  ctx->set_materialize_grads(false);  // the kernel reads an absent gradient as zero
}

// The call save_call kept, in a backward, which a forward that saved nothing cannot have.
c10::intrusive_ptr<SavedCall> saved_call(AutogradContext* ctx) {
  auto call = c10::static_intrusive_pointer_cast<SavedCall>(ctx->saved_data["call"].toCapsule());
  TORCH_CHECK(call->training,
              "fastrnn: backward through a forward that ran with training=False; call it with "
              "training=True (fastrnn's modules and functional do so when grad is enabled)");
  return call;
}

class RnnFunction : public torch::autograd::Function<RnnFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const StackConfig& config, bool training,
                               const at::Tensor& input, const OptTensor& batch_sizes,
                               const OptTensor& hx, const OptTensor& cx, at::TensorList weights,
                               const OptTensor& dropout_masks, const OptTensor& norms_probe) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    // (the input's layout the kernels take as it is)
    const OptTensor hx_ = contiguous(hx), cx_ = contiguous(cx), masks = contiguous(dropout_masks);
    const std::vector<at::Tensor> weights_ = contiguous(weights);
    const StackTensors stack{input, batch_sizes, hx_, cx_, weights_, masks};
    auto [output, h_n, c_n, reserve] = call_rnn(RnnArgs{config, stack, training, norms_probe});
    save_call(ctx, config, training, input, hx, cx.has_value(), norms_probe.has_value(),
              SavedTensors{input, batch_sizes.value_or(at::Tensor()), hx_.value_or(at::Tensor()),
                           cx_.value_or(at::Tensor()), masks.value_or(at::Tensor()), output,
                           reserve, weights_});
    return {output, h_n, c_n, reserve};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto call = saved_call(ctx);
    const SavedTensors t = SavedTensors::from_list(ctx->get_saved_variables());
    const StackTensors stack{t.input, optional(t.batch_sizes), optional(t.hx), optional(t.cx),
                             t.weights, optional(t.dropout_masks)};
    const BelowAutogradUnlessRecording below;
    auto [grad_input, grad_hx, grad_cx, grad_weights, grad_norms] =
        call_rnn_backward(RnnBackwardArgs{
            call->config, stack, optional(grads[0]), optional(grads[1]),
            call->config.lstm() ? optional(grads[2]) : OptTensor(), t.output, t.reserve,
            call->input_needs_grad, call->hx_needs_grad, call->record_norms});
    // one gradient per argument of forward, the weights list counting one per tensor
    variable_list result = {
        at::Tensor(), at::Tensor(),  // config, training
        call->input_needs_grad ? grad_input : at::Tensor(),
        at::Tensor(),  // batch_sizes
        call->hx_needs_grad ? grad_hx : at::Tensor(),
        call->has_cx ? grad_cx : at::Tensor()};
    result.insert(result.end(), grad_weights.begin(), grad_weights.end());
    result.emplace_back();  // dropout_masks
    // not a derivative: the probe's gradient is how the recorded norms leave backward
    result.push_back(call->record_norms ? grad_norms : at::Tensor());
    return result;
  }
};

// Autograd of rnn_backward: it has none, and says so when something differentiates through it
// (a double backward) rather than let autograd's fallback return zeros with a warning.
class RnnBackwardFunction : public torch::autograd::Function<RnnBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const RnnBackwardArgs& args,
                               const at::Tensor& input, const OptTensor& hx, const OptTensor& cx,
                               at::TensorList weights, const at::Tensor& output,
                               const OptTensor& grad_output, const OptTensor& grad_h_n,
                               const OptTensor& grad_c_n) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [grad_input, grad_hx, grad_cx, grad_weights, grad_norms] = call_rnn_backward(args);
    variable_list result = {grad_input, grad_hx, grad_cx, grad_norms};
    result.insert(result.end(), grad_weights.begin(), grad_weights.end());
    return result;
  }

  static variable_list backward(AutogradContext*, variable_list) {
    TORCH_CHECK(false,
                "fastrnn: double backward is not supported: the gradients of a fastrnn op "
                "cannot be differentiated again (autograd.grad with create_graph=True, then a "
                "backward through its result)");
  }
};

// Autograd of the cell op: the stack op's forward and backward on views made here, below
// autograd, so that no view reaches the graph (core/op_args.h).
class CellFunction : public torch::autograd::Function<CellFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const StackConfig& config, bool training,
                               const at::Tensor& input, const OptTensor& hx, const OptTensor& cx,
                               at::TensorList weights) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const std::vector<at::Tensor> weights_ = contiguous(weights);
    const CellArgs args{config, input, contiguous(hx), contiguous(cx), weights_, training};
    const RnnResult stack = call_rnn(RnnArgs{config, cell_stack(args), training, std::nullopt});
    const auto& [output, h_n, c_n, reserve] = stack;
    save_call(ctx, config, training, input, hx, cx.has_value(), false,
              SavedTensors{input, at::Tensor(), args.hx.value_or(at::Tensor()),
                           args.cx.value_or(at::Tensor()), at::Tensor(), output, reserve,
                           weights_});
    const CellResult cell = cell_result(config, stack);
    return {std::get<0>(cell), std::get<1>(cell), reserve};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto call = saved_call(ctx);
    const SavedTensors t = SavedTensors::from_list(ctx->get_saved_variables());
    const CellArgs args{call->config, t.input, optional(t.hx), optional(t.cx), t.weights, true};
    const BelowAutogradUnlessRecording below;
    auto [grad_input, grad_hx, grad_cx, grad_weights, grad_norms] =
        call_rnn_backward(RnnBackwardArgs{
            call->config, cell_stack(args), std::nullopt, as_step(optional(grads[0])),
            call->config.lstm() ? as_step(optional(grads[1])) : OptTensor(), t.output,
            t.reserve, call->input_needs_grad, call->hx_needs_grad, false});
    variable_list result = {
        at::Tensor(), at::Tensor(),  // config, training
        call->input_needs_grad ? of_step_or_undefined(grad_input) : at::Tensor(),
        call->hx_needs_grad ? of_step_or_undefined(grad_hx) : at::Tensor(),
        call->has_cx ? of_step_or_undefined(grad_cx) : at::Tensor()};
    result.insert(result.end(), grad_weights.begin(), grad_weights.end());
    return result;
  }
};

RnnResult rnn_autograd(const RnnArgs& a) {
  const StackTensors& s = a.stack;
  const auto out = RnnFunction::apply(a.config, a.training, s.input, s.batch_sizes, s.hx, s.cx,
                                      s.weights, s.dropout_masks, a.norms_probe);
  return {out[0], out[1], out[2], out[3]};
}

RnnBackwardResult rnn_backward_autograd(const RnnBackwardArgs& a) {
  // the differentiable inputs are passed on their own, for autograd to see them
  const StackTensors& s = a.stack;
  const auto out = RnnBackwardFunction::apply(a, s.input, s.hx, s.cx, s.weights, a.output,
                                              a.grad_output, a.grad_h_n, a.grad_c_n);
  return {out[0], out[1], out[2], std::vector<at::Tensor>(out.begin() + 4, out.end()), out[3]};
}

CellResult cell_autograd(const CellArgs& a) {
  const auto out = CellFunction::apply(a.config, a.training, a.input, a.hx, a.cx, a.weights);
  return {out[0], out[1], out[2]};
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("cell", &fastrnn::cell_kernel<&fastrnn::cell_autograd>);
  m.impl("rnn", &fastrnn::rnn_kernel<&fastrnn::rnn_autograd>);
  m.impl("rnn_backward", &fastrnn::rnn_backward_kernel<&fastrnn::rnn_backward_autograd>);
}
