// The CUDA drivers on a GPU (rnn_cuda.cu, CUDA builds only): core/stack.h over cuda/driver.h
// with the device Exec (kernels on torch's current stream, GEMMs through torch's cuBLAS handle,
// buffers from torch's caching allocator). Verified on the CPU under host emulation
// (cuda/emulator.cpp); not yet run on a GPU, so cuda/ops_cuda.cpp calls them only when
// FASTRNN_EXPERIMENTAL_CUDA=1.
#pragma once

#include "core/params.h"

namespace fastrnn::cuda {

template <typename scalar_t>
void device_forward(const RnnParams<scalar_t>& p);
template <typename scalar_t>
void device_backward(const RnnGradParams<scalar_t>& p);

}  // namespace fastrnn::cuda
