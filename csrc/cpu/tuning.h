// The CPU drivers' size thresholds, in one place. Each was chosen by measurement: the runs
// behind every number are in benchmarks/README.md, section "Thresholds of cpu/tuning.h".
// None depends on the thread count, so neither do the outputs (tests/test_threads.py).
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

}  // namespace fastrnn::cpu
