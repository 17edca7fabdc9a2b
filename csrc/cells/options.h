// The cells' runtime options: each one a `float? NAME=None` argument of both stack ops (None:
// off), listed once in FASTRNN_CELL_OPTIONS. The op schemas, the kernels' argument lists, the
// calls through the dispatcher and the fields of CellOptions are generated from the list, and
// the options reach every cell call as one CellOptions value: a new option is a line here, its
// check in make_config (core/op_args.cpp) and its use in the cells.
//
//   X(name, value meaning off)
#pragma once

#include <limits>

namespace fastrnn {

inline constexpr double kUnclipped = std::numeric_limits<double>::infinity();

#define FASTRNN_CELL_OPTIONS(X)                                                              \
  /* backward: dL/d(gate pre-activation) clamped to [-grad_clip, grad_clip] at every step */ \
  X(grad_clip, kUnclipped)                                                                   \
  /* forward, LSTM: c_t clamped to [-cell_clip, cell_clip] (gradient zero where clamped) */   \
  X(cell_clip, kUnclipped)

struct CellOptions {
#define FASTRNN_OPTION_FIELD(name, off) double name = off;
  FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_FIELD)
#undef FASTRNN_OPTION_FIELD
};

}  // namespace fastrnn
