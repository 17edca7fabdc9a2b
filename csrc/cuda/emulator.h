// Host emulation of the CUDA drivers: the very driver (cuda/driver.h) and kernel bodies
// (cuda/kernels.cuh) that the CUDA build runs on a GPU, run on CPU memory, so that the tests
// check them on machines without a GPU (fastrnn.cuda_emulation()).
#pragma once

#include <cstdint>

#include "core/params.h"

namespace fastrnn::cuda {

// Whether the ops on CPU tensors run the emulated CUDA drivers instead of the CPU drivers.
bool emulation_enabled();
void set_emulation(bool enabled);

// What the emulated calls did since reset_emulation_stats(): kernel launches (those with block
// barriers among them) and GEMM calls.
struct EmulationStats {
  int64_t launches = 0, synced_launches = 0, gemms = 0;
};
EmulationStats emulation_stats();
void reset_emulation_stats();

template <typename scalar_t>
void emulated_forward(const RnnParams<scalar_t>& p);
template <typename scalar_t>
void emulated_backward(const RnnGradParams<scalar_t>& p);

}  // namespace fastrnn::cuda
