// The CPU drivers' size thresholds, in one place. Each was chosen by measurement: the runs
// behind every number are in benchmarks/README.md, section "Thresholds of cpu/tuning.h".
// The outputs depend on none of them, nor on the thread count (tests/test_threads.py).
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

// A layer call of at most this many rows in all (T x B: a decoder's step at a small batch, a
// short sequence at batch 1) reads its weights where they are instead of packing them (packing
// is a pass over each W per call, into fresh memory, repaid only over many rows), and computes
// W_ih x inside its steps.
inline constexpr int64_t kDirectMaxRows = 8;

// Larger calls compute W_ih x inside the steps (each thread its units' columns, never a round
// trip through memory) where the weights stay in the cores' L2 and the batch keeps the packed
// kernel at its full rate (W_ih + W_hh within kStepWeightBytes and B >= kStepInputMinBatch), or
// where the batch is large enough to hide streaming them (B >= kStepInputStreamingMinBatch).
inline constexpr int64_t kStepWeightBytes = 2 * 1024 * 1024;
inline constexpr int64_t kStepInputMinBatch = 16;
inline constexpr int64_t kStepInputStreamingMinBatch = 64;

// Forward and backward with the packed float32 or bfloat16 kernels share a layer's steps by rows
// of the batch, each thread every unit of its rows with no wait between steps, instead of by
// units (h, or dL/dh, crossing between the threads every step), where each thread keeps at
// least kRowSplitMinRows rows (kRowSplitMinRowsBf16 with the bfloat16 kernel; fewer keep too
// few products in flight) and the layer's weights (W_ih, W_hh, W_hr as the products read them),
// which every thread then reads every step, take at most kRowSplitWeightBytes.
inline constexpr int64_t kRowSplitMinRows = 4;
inline constexpr int64_t kRowSplitMinRowsBf16 = 3;
inline constexpr int64_t kRowSplitWeightBytes = 8 * 1024 * 1024;

}  // namespace fastrnn::cpu
