"""A one-line text progress bar for long commands (dataset builds, predictions) on a terminal."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line text progress bar on stderr (only when stderr is a terminal and not quiet)."""

    def __init__(self, label: str, enabled: bool = True, width: int = 30) -> None:
        self.label, self.width = label, width
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self._last = -1.0

    def __call__(self, fraction: float, message: str = "") -> None:
        if not self.enabled or (fraction - self._last < 0.01 and fraction < 1.0):
            return
        self._last = fraction
        filled = int(round(self.width * fraction))
        elapsed = time.monotonic() - self.start
        line = f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {elapsed:5.1f}s {message[:40]:40s}"
        sys.stderr.write(line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._last >= 0:
            sys.stderr.write("\n")
            sys.stderr.flush()
