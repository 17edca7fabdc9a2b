// Every cell, and the one switch from the runtime CellKind to its compile-time cell type.
#pragma once

#include "cells/gru.h"
#include "cells/lstm.h"
#include "cells/rnn.h"
#include <type_traits>

#include "params.h"

namespace fastrnn {

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
