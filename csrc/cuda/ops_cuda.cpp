// The CUDA glue: the op kernels for the CUDA dispatch key. The CUDA drivers (cuda/driver.h over
// the device Exec of rnn_cuda.cu) are verified on the CPU under host emulation but have not run
// on a GPU yet, so they serve CUDA tensors only when FASTRNN_EXPERIMENTAL_CUDA=1 (for the GPU
// check script); otherwise a CUDA call says clearly that there are no kernels for it, and
// fastrnn's modules fall back to torch.nn before they get here.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "core/checks.h"
#include "core/op_args.h"
#ifdef FASTRNN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>

#include "cuda/rnn_cuda.h"
#endif

namespace fastrnn::cuda {
namespace {

#ifdef FASTRNN_WITH_CUDA
bool experimental_drivers() {
  const char* want = std::getenv("FASTRNN_EXPERIMENTAL_CUDA");
  return want && std::strcmp(want, "1") == 0;
}
#endif

[[noreturn]] void no_cuda_kernels(const at::Tensor& input) {
#ifdef FASTRNN_WITH_CUDA
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              " yet; this build has CUDA drivers not yet run on a GPU, which "
                              "FASTRNN_EXPERIMENTAL_CUDA=1 turns on");
#else
  TORCH_CHECK_NOT_IMPLEMENTED(false, "fastrnn: no kernels for ", input.device(),
                              "; this build of fastrnn has CPU kernels only");
#endif
}

// The arguments are checked first, as on every device, so bad input names its tensor.
RnnResult forward_kernel(const RnnArgs& a) {
#ifdef FASTRNN_WITH_CUDA
  if (experimental_drivers()) {
    const c10::cuda::CUDAGuard guard(a.stack.input.device());
    const bool tf32 = allow_tf32();  // torch's matmul TF32 switch
    return run_forward(a, [&](const auto& p) { device_forward(p, tf32); });
  }
#endif
  check_stack(a.config, a.stack, a.norms_probe);
  no_cuda_kernels(a.stack.input);
}

RnnBackwardResult backward_kernel(const RnnBackwardArgs& a) {
#ifdef FASTRNN_WITH_CUDA
  if (experimental_drivers()) {
    const c10::cuda::CUDAGuard guard(a.stack.input.device());
    const bool tf32 = allow_tf32();
    return run_backward(a, [&](const auto& p) { device_backward(p, tf32); });
  }
#endif
  check_stack(a.config, a.stack);
  no_cuda_kernels(a.stack.input);
}

}  // namespace
}  // namespace fastrnn::cuda

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn", &fastrnn::rnn_kernel<&fastrnn::cuda::forward_kernel>);
  m.impl("rnn_backward", &fastrnn::rnn_backward_kernel<&fastrnn::cuda::backward_kernel>);
}
