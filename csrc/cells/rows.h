// What a cell reads and writes for one batch row of one step, as two small structs, and the
// compile-time flags of a forward call. A new per-row input (a mask, statistics) is a new field
// here and a use in the cells; a new runtime option is one line of cells/options.h.
//
// H hidden units, G gates, S values saved per row in units of H (each cell's kGates, kSaved).
// Rows are plain pointers to the row's first element; the driver picks the row, the cell the
// unit j within it. Storage type T (the tensors' dtype); the math runs in compute_t<T>, and
// what a step carries to the next (the running h and c, the gate pre-activations and their
// gradients, dL/dh and dL/dc) is kept in it too: rounding those to a 16-bit type at every step
// would add an error that grows with T. What leaves the layer (its output, the saved rows) and
// what comes from outside (x, biases, h0 and c0) is stored as T.
#pragma once

#include <cstdint>

#include "cells/half.h"
#include "cells/options.h"

namespace fastrnn {

// The type a cell computes and accumulates in for a storage type: the same for float and
// double, float for the 16-bit types.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<bfloat16> {
  using type = float;
};
template <>
struct ComputeType<float16> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

// Runtime flags of a forward call, as template parameters (the hot loop carries no branch).
template <bool kTraining_, bool kHasBias_>
struct CellFlags {
  static constexpr bool kTraining = kTraining_;  // write the saved row
  static constexpr bool kHasBias = kHasBias_;    // b_ih and b_hh given (else both nullptr)
};

// Compile-time flags of a backward call.
template <bool kRecordCellGrad_>
struct BackwardFlags {
  static constexpr bool kRecordCellGrad = kRecordCellGrad_;  // write dc_total (cell state)
};

template <typename T>
struct ForwardRow {
  using C = compute_t<T>;
  // [G*H] W_ih x of the row; may alias saved where T is its own compute type (each unit reads
  // first)
  const C* x_pre = nullptr;
  const C* h_pre = nullptr;   // [G*H] W_hh h_prev of the row
  const T* b_ih = nullptr;    // [G*H] or nullptr (no bias)
  const T* b_hh = nullptr;    // [G*H] or nullptr
  const C* h_prev = nullptr;  // [H] h_{t-1} (read by the GRU, which has no projection)
  const C* c_prev = nullptr;  // [H] c_{t-1}, cells with a cell state; may alias c
  C* h = nullptr;             // [H] the cell's output (before an LSTM projection)
  C* c = nullptr;             // [H] c_t, cells with a cell state
  T* saved = nullptr;         // [S*H] written when training
};

template <typename T>
struct BackwardRow {
  using C = compute_t<T>;
  const C* dh = nullptr;      // [H] dL/d(the cell's output h_t): from the output and step t+1
  C* dc = nullptr;            // [H] in dL/dc_t from step t+1, out dL/dc_{t-1} (cell state)
  const T* saved = nullptr;   // [S*H] what forward saved for this row
  const T* h_prev = nullptr;  // [H] h_{t-1}
  const T* h = nullptr;       // [H] h_t (read by the RNN cells, which save nothing)
  const T* c_prev = nullptr;  // [H] c_{t-1} (cell state)
  C* dx_pre = nullptr;        // [G*H] dL/d(W_ih x + b_ih)
  // [G*H] dL/d(W_hh h_prev + b_hh): written only by cells with kSplitHiddenGrad, whose two
  // differ; the others' is dx_pre
  C* dh_pre = nullptr;
  // [H] the part of dL/dh_{t-1} that does not go through W_hh (kSplitHiddenGrad cells); may
  // alias dh (each unit reads its dh first)
  C* dh_prev_direct = nullptr;
  // [H] the full dL/dc_t (through h_t and c_{t+1}), written by cells with a cell state when
  // BackwardFlags::kRecordCellGrad (the driver records its norm)
  C* dc_total = nullptr;
};

}  // namespace fastrnn
