// The CUDA glue: the op kernels for the CUDA dispatch key. There are no CUDA sequence drivers
// yet (the per-step pointwise kernels of pointwise.cuh are compiled in CUDA builds to prove the
// shared cell math builds for the device), so a CUDA call says so clearly; fastrnn's modules
// fall back to torch.nn before they get here.
#include <torch/library.h>

#include "core/checks.h"
#include "core/op_args.h"

namespace fastrnn::cuda {
namespace {

[[noreturn]] void no_cuda_kernels(const at::Tensor& input) {
#ifdef FASTRNN_WITH_CUDA
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              " yet; this build has CPU kernels and the CUDA build plumbing");
#else
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              "; this build of fastrnn has CPU kernels only");
#endif
}

// The arguments are checked first, as on every device, so bad input names its tensor.
RnnResult forward_kernel(const RnnArgs& a) {
  check_stack(a.config, a.stack, a.norms_probe);
  no_cuda_kernels(a.stack.input);
}

RnnBackwardResult backward_kernel(const RnnBackwardArgs& a) {
  check_stack(a.config, a.stack);
  no_cuda_kernels(a.stack.input);
}

}  // namespace
}  // namespace fastrnn::cuda

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn", &fastrnn::rnn_kernel<&fastrnn::cuda::forward_kernel>);
  m.impl("rnn_backward", &fastrnn::rnn_backward_kernel<&fastrnn::cuda::backward_kernel>);
}
