// The CPU glue's facts that the pybind11 module reports (ops.cpp).
#pragma once

#include <string>

namespace fastrnn::cpu {

// Engine of the whole-sequence GEMMs: "torch" (at::mm, MKL) or "openblas".
std::string gemm_engine();

}  // namespace fastrnn::cpu
