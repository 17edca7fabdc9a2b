// Host emulation of the CUDA drivers: the very driver (cuda/driver.h) and kernel bodies
// (cuda/kernels.cuh) that the CUDA build runs on a GPU, run on CPU memory, so that the tests
// check them on machines without a GPU (fastrnn.cuda_emulation()).
#pragma once

#include <cstdint>
#include <string>

#include "core/params.h"
#include "cuda/plan.h"

namespace fastrnn::cuda {

// Whether the ops on CPU tensors run the emulated CUDA drivers instead of the CPU drivers.
bool emulation_enabled();
void set_emulation(bool enabled);

// What the emulated calls did since reset_emulation_stats(): kernel launches (those with block
// barriers among them, and the cooperative ones: the persistent path) and GEMM calls.
struct EmulationStats {
  int64_t launches = 0, synced_launches = 0, cooperative_launches = 0, gemms = 0;
};
EmulationStats emulation_stats();
void reset_emulation_stats();

// The emulation's choices: the CUDA path ("" for FASTRNN_CUDA_PATH, else as it), the emulated
// device (cuda/plan.h's "a100" or "h100") and its SM count (0: the device's own; fewer SMs give
// the tests blocks of several units at small sizes). Bad names throw std::invalid_argument.
struct EmulationSettings {
  std::string path, device = "a100";
  int64_t sms = 0;
};
void set_emulation_settings(const EmulationSettings& settings);
EmulationSettings emulation_settings();
DeviceLimits emulated_device();  // the settings' device, as the emulated drivers see it

template <typename scalar_t>
void emulated_forward(const RnnParams<scalar_t>& p);
template <typename scalar_t>
void emulated_backward(const RnnGradParams<scalar_t>& p);

}  // namespace fastrnn::cuda
