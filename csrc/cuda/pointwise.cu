// Instantiates the pointwise step kernels of pointwise.cuh for every cell, flag and dtype.
#include "cuda/pointwise.cuh"

namespace fastrnn::cuda {

#define FASTRNN_INSTANTIATE_CELL(Cell, scalar_t)                                              \
  template __global__ void forward_step_kernel<Cell, false, false, scalar_t>(                 \
      int64_t, int64_t, const scalar_t*, int64_t, const scalar_t*, const scalar_t*,           \
      const scalar_t*, const scalar_t*, const scalar_t*, int64_t, scalar_t*, scalar_t*,       \
      int64_t, scalar_t*);                                                                    \
  template __global__ void forward_step_kernel<Cell, true, true, scalar_t>(                   \
      int64_t, int64_t, const scalar_t*, int64_t, const scalar_t*, const scalar_t*,           \
      const scalar_t*, const scalar_t*, const scalar_t*, int64_t, scalar_t*, scalar_t*,       \
      int64_t, scalar_t*);                                                                    \
  template __global__ void backward_step_kernel<Cell, scalar_t>(                              \
      int64_t, int64_t, scalar_t*, const scalar_t*, scalar_t*, const scalar_t*,               \
      const scalar_t*, const scalar_t*, const scalar_t*, int64_t, scalar_t*, scalar_t*);

#define FASTRNN_INSTANTIATE(scalar_t)                \
  FASTRNN_INSTANTIATE_CELL(LstmCell, scalar_t)       \
  FASTRNN_INSTANTIATE_CELL(GruCell, scalar_t)        \
  FASTRNN_INSTANTIATE_CELL(RnnTanhCell, scalar_t)    \
  FASTRNN_INSTANTIATE_CELL(RnnReluCell, scalar_t)

FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)

}  // namespace fastrnn::cuda
