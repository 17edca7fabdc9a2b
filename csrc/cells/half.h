// The two 16-bit storage types, bfloat16 and float16 (IEEE binary16), as plain structs the
// kernels can use on the host and on the device without PyTorch: each holds its bits and
// converts to and from float, rounding to nearest even as torch's and CUDA's conversions do
// (so a value stored by a kernel equals what tensor.to(dtype) makes of the same float).
// Same size and layout as at::BFloat16 / at::Half, so the glue passes tensors' data through.
// The cells compute in float for both (rows.h's compute_t).
#pragma once

#include <cstdint>
#include <cstring>

#include "cells/common.h"

namespace fastrnn {

namespace half_bits {

FASTRNN_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

FASTRNN_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// float -> bfloat16: the top half of the float, rounded to nearest even; NaN stays a (quiet) NaN.
// Branch-free (a select), so that the cells' loops over units that store it still vectorise.
FASTRNN_HD uint16_t to_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t quiet_nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

FASTRNN_HD float from_bf16(uint16_t b) { return bits_float(uint32_t{b} << 16); }

// float -> binary16, round to nearest even, with subnormals, overflow to inf and NaN. Every case
// is computed and one selected (no branch, so the cells' loops storing it vectorise). Below the
// normal range, adding 0.5f puts the binary16 subnormal's last bit at the float's last bit and the
// float addition rounds it to nearest even.
FASTRNN_HD uint16_t to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  const uint32_t r = a - 0x38000000u;                              // exponent rebased 127 -> 15
  const uint32_t normal = (r + 0xfffu + ((r >> 13) & 1u)) >> 13;
  const uint32_t subnormal = float_bits(bits_float(a) + 0.5f) - 0x3f000000u;
  uint32_t bits = a >= 0x38800000u ? normal : subnormal;
  bits = a >= 0x477ff000u ? 0x7c00u : bits;  // rounds to >= 65536: inf
  bits = a > 0x7f800000u ? 0x7e00u : bits;   // NaN
  return static_cast<uint16_t>(sign | bits);
}

// binary16 -> float, exactly; a select of the three cases, as to_f16
FASTRNN_HD float from_f16(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  const uint32_t normal = ((e + 112u) << 23) | (m << 13);
  const uint32_t special = 0x7f800000u | (m << 13);                       // inf, NaN
  const uint32_t subnormal = float_bits(static_cast<float>(m) * 5.9604644775390625e-08f);
  uint32_t bits = e != 0 ? normal : subnormal;
  bits = e == 0x1fu ? special : bits;
  return bits_float(sign | bits);
}

}  // namespace half_bits

struct bfloat16 {
  uint16_t bits;
  bfloat16() = default;
  FASTRNN_HD explicit bfloat16(float f) : bits(half_bits::to_bf16(f)) {}
  FASTRNN_HD explicit operator float() const { return half_bits::from_bf16(bits); }
};

struct float16 {
  uint16_t bits;
  float16() = default;
  FASTRNN_HD explicit float16(float f) : bits(half_bits::to_f16(f)) {}
  FASTRNN_HD explicit operator float() const { return half_bits::from_f16(bits); }
};

static_assert(sizeof(bfloat16) == 2 && sizeof(float16) == 2);

}  // namespace fastrnn
