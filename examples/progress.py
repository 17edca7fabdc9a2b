"""A one-line text progress bar on stderr for the examples (no dependency):

    progress = Progress(400, "LSTM")
    for step in range(1, 401):
        ...
        progress.update(step, loss=loss.item())
    progress.close()

draws `LSTM [########............] 160/400 loss 0.0421 12.3s`, redrawn in place at most ten
times a second on a terminal; elsewhere (a log file, a pipe) it writes nothing until close(),
which writes the final line.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar for `total` steps, labelled `label`, written to `stream` (stderr)."""

    def __init__(self, total: int, label: str, stream=None, width: int = 20):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = sys.stderr if stream is None else stream
        self.live = getattr(self.stream, "isatty", lambda: False)()
        self.start = self.last_draw = time.perf_counter()
        self.line = ""

    def update(self, done: int, **values: float) -> None:
        """Record that `done` steps are finished; `values` (e.g. loss=0.1) follow the count."""
        filled = self.width * min(done, self.total) // self.total
        shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
        now = time.perf_counter()
        self.line = (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                     f"{done}/{self.total} {shown} {now - self.start:.1f}s")
        if self.live and (now - self.last_draw >= 0.1 or done >= self.total):
            self.stream.write("\r" + self.line)
            self.stream.flush()
            self.last_draw = now

    def close(self) -> None:
        """End the bar's line (on a terminal) or write its last state (elsewhere)."""
        self.stream.write(("\r" if self.live else "") + self.line + "\n")
        self.stream.flush()
