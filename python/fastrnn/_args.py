"""Argument checks shared by fastrnn's Python helpers (init, seq2seq): each returns the value
converted, or raises TypeError / ValueError whose message starts with the caller's name."""

from __future__ import annotations

import math
import numbers
import operator


def real(owner: str, name: str, value) -> float:
    """value as a finite float; bools, tensors and other non-numbers raise TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return value


def index(owner: str, name: str, value, minimum: int) -> int:
    """value as an int (anything with __index__ but bool) of at least minimum."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, got {value}")
    return value
