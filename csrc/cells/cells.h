// Every cell, the list of modes (the one place that names them), and the switch from the
// runtime CellKind to the compile-time cell type.
#pragma once

#include <string_view>
#include <type_traits>

#include "cells/gru.h"
#include "cells/lstm.h"
#include "cells/rnn.h"

namespace fastrnn {

enum class CellKind { kLstm, kGru, kRnnTanh, kRnnRelu };

// The op's `mode` strings, with their cells.
struct Mode {
  std::string_view name;
  CellKind kind;
};
inline constexpr Mode kModes[] = {{"lstm", CellKind::kLstm},
                                  {"gru", CellKind::kGru},
                                  {"rnn_tanh", CellKind::kRnnTanh},
                                  {"rnn_relu", CellKind::kRnnRelu}};

// Calls f(Cell{}) with the cell type of `kind`.
template <class F>
decltype(auto) visit_cell(CellKind kind, F&& f) {
  switch (kind) {
    case CellKind::kLstm:
      return f(LstmCell{});
    case CellKind::kGru:
      return f(GruCell{});
    case CellKind::kRnnTanh:
      return f(RnnTanhCell{});
    case CellKind::kRnnRelu:
      break;
  }
  return f(RnnReluCell{});
}

// Calls f(std::true_type{}) or f(std::false_type{}): a runtime flag becomes a template argument.
template <class F>
decltype(auto) bool_switch(bool flag, F&& f) {
  if (flag) return f(std::true_type{});
  return f(std::false_type{});
}

}  // namespace fastrnn
