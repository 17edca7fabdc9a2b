// The reserve: what a training forward saves for backward, one [N, reserve_width] matrix. For
// every layer and direction the S*H saved values of each row (the cell's own layout, cells/*.h),
// then for every layer but the last its output ([N, D*P]), which feeds the next layer.
#pragma once

#include <cstdint>

#include "core/params.h"

namespace fastrnn {

// Columns of the reserve (its rows: N).
inline int64_t reserve_width(int64_t L, int64_t D, int64_t S, int64_t H, int64_t P) {
  return L * D * S * H + (L - 1) * D * P;
}

// Where the reserve of p keeps the saved rows of layer l, direction d, and the output of layer l.
template <class Cell, typename scalar_t>
struct ReserveLayout {
  const RnnParams<scalar_t>& p;
  scalar_t* saved(int64_t l, int64_t d) const {
    return Cell::kSaved ? p.reserve + (l * p.D + d) * p.N * Cell::kSaved * p.H : nullptr;
  }
  scalar_t* layer_output(int64_t l) const {
    return p.reserve + p.L * p.D * p.N * Cell::kSaved * p.H + l * p.N * p.D * p.P;
  }
};

}  // namespace fastrnn
