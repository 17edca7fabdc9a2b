// Instantiates the pointwise step kernels of pointwise.cuh for every cell, option and dtype.
#include "cuda/pointwise.cuh"

namespace fastrnn::cuda {

// forward: every (kTraining, kHasBias), as the CPU driver's bool_switch()es dispatch them
#define FASTRNN_INSTANTIATE_FORWARD(Cell, kTraining, kHasBias, scalar_t)                 \
  template __global__ void forward_step_kernel<Cell, CellFlags<kTraining, kHasBias>,   \
                                               scalar_t>(ForwardStep<scalar_t>);

#define FASTRNN_INSTANTIATE_CELL(Cell, scalar_t)                                         \
  FASTRNN_INSTANTIATE_FORWARD(Cell, false, false, scalar_t)                              \
  FASTRNN_INSTANTIATE_FORWARD(Cell, false, true, scalar_t)                               \
  FASTRNN_INSTANTIATE_FORWARD(Cell, true, false, scalar_t)                               \
  FASTRNN_INSTANTIATE_FORWARD(Cell, true, true, scalar_t)                                \
  template __global__ void backward_step_kernel<Cell, BackwardFlags<false>, scalar_t>(    \
      BackwardStep<scalar_t>);

#define FASTRNN_INSTANTIATE(scalar_t)             \
  FASTRNN_INSTANTIATE_CELL(LstmCell, scalar_t)    \
  FASTRNN_INSTANTIATE_CELL(GruCell, scalar_t)     \
  FASTRNN_INSTANTIATE_CELL(RnnTanhCell, scalar_t) \
  FASTRNN_INSTANTIATE_CELL(RnnReluCell, scalar_t)

FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)

}  // namespace fastrnn::cuda
