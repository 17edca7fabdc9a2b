// Scalar helpers shared by every cell, on the host and (under nvcc) on the device.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cells/fast_math.h"

#if defined(__CUDACC__)
#define FASTRNN_HD __host__ __device__ __forceinline__
#else
#define FASTRNN_HD inline
#endif

namespace fastrnn {

// The activations. On the CPU, float and double use the vectorisable fast:: functions
// (fast_math.h); on the device, CUDA's math headers overload ::exp and ::tanh for float.
template <typename T>
FASTRNN_HD T tanh_(T x) {
#if defined(__CUDA_ARCH__)
  return ::tanh(x);
#else
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return fast::tanh(x);
  } else {
    return std::tanh(x);
  }
#endif
}

template <typename T>
FASTRNN_HD T sigmoid(T x) {
#if defined(__CUDA_ARCH__)
  return T(1) / (T(1) + ::exp(-x));
#else
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return fast::sigmoid(x);
  } else {
    return T(1) / (T(1) + std::exp(-x));
  }
#endif
}

// x clamped to [-limit, limit]: NaN passes through, an infinite limit changes nothing (bitwise).
template <typename T>
FASTRNN_HD T clamp_abs(T x, T limit) {
  return x > limit ? limit : (x < -limit ? -limit : x);
}

// |x|.
template <typename T>
FASTRNN_HD T abs_(T x) {
#if defined(__CUDA_ARCH__)
  return ::fabs(x);
#else
  return std::fabs(x);
#endif
}

// |x| carrying the sign of s (a flag kept in the sign bit of a non-negative value).
template <typename T>
FASTRNN_HD T copysign_(T x, T s) {
#if defined(__CUDA_ARCH__)
  return ::copysign(x, s);
#else
  return std::copysign(x, s);
#endif
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

// Bias of gate unit k (k = gate * H + j) in the compute type C; a cell built without bias
// passes nullptr.
template <bool kHasBias, typename C, typename T>
FASTRNN_HD C bias_at(const T* b, int64_t k) {
  if constexpr (kHasBias) {
    return C(b[k]);
  } else {
    return C(0);
  }
}

}  // namespace fastrnn
