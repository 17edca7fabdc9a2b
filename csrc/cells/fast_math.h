// exp, expm1, tanh and sigmoid for float on the CPU, written without branches or library calls
// so that the compiler vectorises loops over hidden units (libm's expf/tanhf are scalar calls).
//
// Accuracy against double precision, measured on a 1e-4 grid over [-100, 100] and on tiny |x|:
// exp 1.0 ulp, expm1 1.6 ulp, tanh 2.1 ulp, sigmoid 2.5 ulp (tests/test_fast_math.py checks
// these bounds). Out of range: exp(x) is +inf beyond ln(FLT_MAX) ~ 88.72 (as libm's overflows),
// saturates at exp(88.3) ~ 2e38 just below it and at exp(-87.3) ~ 1e-38 for smaller x; so
// sigmoid(x) is 0 for x < -88.72 (as torch's float sigmoid, which overflows the same way) and
// sigmoid(-inf) = 0 exactly, which non-finite propagation needs (r * inf must be NaN when r is
// sigmoid(-inf), as in torch.nn); NaN gives NaN, tanh(+-inf) = +-1.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastrnn::fast {

// x limited to [lo, hi]; NaN fails both comparisons and stays NaN. Selected by bit masks: with
// `x < lo ? lo : x`, GCC carries the constant into the code that follows as a separate branch,
// and a loop with a branch does not vectorise (for AVX2 or SSE; AVX-512's masks cope).
inline float clamp(float x, float lo, float hi) {
  int32_t x_bits, lo_bits, hi_bits;
  std::memcpy(&x_bits, &x, sizeof x);
  std::memcpy(&lo_bits, &lo, sizeof lo);
  std::memcpy(&hi_bits, &hi, sizeof hi);
  const int32_t below = -static_cast<int32_t>(x < lo), above = -static_cast<int32_t>(x > hi);
  x_bits = (x_bits & ~(below | above)) | (lo_bits & below) | (hi_bits & above);
  std::memcpy(&x, &x_bits, sizeof x);
  return x;
}

// x = n ln2 + r with |r| <= ln2/2; returns expm1(r) and sets scale = 2^n.
inline float expm1_reduced(float x, float& scale) {
  x = clamp(x, -87.3f, 88.3f);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  // ln2 in two parts (Cody-Waite): n * ln2_hi is exact for |n| <= 128
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  // expm1(r) = r + r^2/2! + ... + r^7/7!: the next term is below 2e-8 relative for |r| <= ln2/2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  std::memcpy(&scale, &bits, sizeof scale);
  return r + r * r * p;
}

// +inf where `overflow`, else y: bit masks again, so loops stay branch-free
inline float inf_where(bool overflow, float y) {
  const float inf = __builtin_inff();
  int32_t y_bits, inf_bits;
  std::memcpy(&y_bits, &y, sizeof y);
  std::memcpy(&inf_bits, &inf, sizeof inf);
  const int32_t mask = -static_cast<int32_t>(overflow);
  y_bits = (y_bits & ~mask) | (inf_bits & mask);
  std::memcpy(&y, &y_bits, sizeof y);
  return y;
}

inline float exp(float x) {
  float scale;
  const float q = expm1_reduced(x, scale);
  return inf_where(x > 88.7228394f, scale * q + scale);  // ln(FLT_MAX), rounded up
}

// expm1(x) = 2^n expm1(r) + (2^n - 1): no cancellation when x is near 0 (n = 0)
inline float expm1(float x) {
  float scale;
  const float q = expm1_reduced(x, scale);
  return scale * q + (scale - 1.0f);
}

// tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2), accurate near 0 where 1 - 2/(e^2x + 1) is not
inline float tanh(float x) {
  const float e = fast::expm1(2.0f * std::fabs(x));
  return std::copysign(e / (e + 2.0f), x);
}

inline float sigmoid(float x) { return 1.0f / (1.0f + fast::exp(-x)); }

}  // namespace fastrnn::fast
