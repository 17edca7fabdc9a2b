// The CUDA drivers on a GPU (rnn_cuda.cu, CUDA builds only): core/stack.h over cuda/driver.h
// with the device Exec (kernels on torch's current stream, GEMMs through torch's cuBLAS handle,
// buffers from torch's caching allocator). Verified on the CPU under host emulation
// (cuda/emulator.cpp); not yet run on a GPU, so cuda/ops_cuda.cpp calls them only when
// FASTRNN_EXPERIMENTAL_CUDA=1.
#pragma once

#include "core/params.h"

namespace fastrnn::cuda {

// allow_tf32: torch.backends.cuda.matmul.allow_tf32 (float32 products on tensor cores as TF32).
template <typename scalar_t>
void device_forward(const RnnParams<scalar_t>& p, bool allow_tf32);
template <typename scalar_t>
void device_backward(const RnnGradParams<scalar_t>& p, bool allow_tf32);

}  // namespace fastrnn::cuda
