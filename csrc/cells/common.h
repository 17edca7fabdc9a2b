// Scalar helpers shared by every cell, on the host and (under nvcc) on the device.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FASTRNN_HD __host__ __device__ __forceinline__
#else
#define FASTRNN_HD inline
#endif

namespace fastrnn {

// std:: overloads on the host keep float math in float; CUDA's math headers overload ::exp and
// ::tanh for float on the device.
template <typename T>
FASTRNN_HD T exp_(T x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

template <typename T>
FASTRNN_HD T tanh_(T x) {
#if defined(__CUDA_ARCH__)
  return ::tanh(x);
#else
  return std::tanh(x);
#endif
}

template <typename T>
FASTRNN_HD T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// Derivatives written in terms of the activation's output y, which is what forward saves.
template <typename T>
FASTRNN_HD T d_sigmoid(T y) {
  return y * (T(1) - y);
}

template <typename T>
FASTRNN_HD T d_tanh(T y) {
  return T(1) - y * y;
}

// Bias of gate unit k (k = gate * H + j); a cell built without bias passes nullptr.
template <bool kHasBias, typename T>
FASTRNN_HD T bias_at(const T* b, int64_t k) {
  if constexpr (kHasBias) {
    return b[k];
  } else {
    return T(0);
  }
}

}  // namespace fastrnn
