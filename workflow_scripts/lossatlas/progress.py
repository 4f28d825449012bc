"""Progress lines for long jobs: a paper-scale GPU job runs for hours, and its log is all a user can watch.

A loop makes one :class:`Progress` and calls :meth:`Progress.update` after each epoch or step; at most once per
interval (60 s, or ``LOSSATLAS_PROGRESS_SECONDS``: tests set it to 0) it logs one plain line (no carriage-return
bars, which job logs mangle):

    train g0 main: epoch 12/200, loss 0.4312, 41.2 s/epoch, about 2h09m left
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

INTERVAL_ENV = "LOSSATLAS_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 60.0

log = logging.getLogger("lossatlas.progress")


def format_duration(seconds: float) -> str:
    """``42s``, ``7m05s`` or ``2h09m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts units (``epoch``, ``step``, ``iteration``) of ``total`` from ``done`` (a resumed job starts past
    0; its rate counts only the units done in this process)."""

    def __init__(self, what: str, total: int, unit: str = "epoch", done: int = 0,
                 interval_s: float | None = None, logger: logging.Logger | None = None):
        self.what, self.total, self.unit = what, int(total), unit
        if interval_s is None:
            interval_s = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
        self.interval_s = interval_s
        self.logger = logger or log
        self.start_done = int(done)
        self.start = self.last = time.monotonic()

    def update(self, done: int, loss: float | Callable[[], float] | None = None) -> str | None:
        """Log a line if the interval has passed since the last one (or this is the last unit); returns it.
        ``loss`` may be a function, called only when a line is written (on a GPU reading a loss waits for it)."""
        now = time.monotonic()
        if now - self.last < self.interval_s and done < self.total:
            return None
        self.last = now
        units = done - self.start_done
        per_unit = (now - self.start) / units if units > 0 else math.nan
        parts = [f"{self.what}: {self.unit} {done}/{self.total}"]
        if callable(loss):
            loss = loss()
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        if units > 0:
            parts.append(f"{per_unit:.3g} s/{self.unit}")
            parts.append(f"about {format_duration(per_unit * (self.total - done))} left")
        line = ", ".join(parts)
        self.logger.info(line)
        return line
