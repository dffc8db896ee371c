"""A dependency-free progress bar for long jobs (batch scoring, benchmarks)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts work units and redraws one status line on ``stream``.

    Enabled by default only when ``stream`` is a terminal, so logs and pipes stay clean.
    Redraws at most every ``interval`` seconds.
    """

    def __init__(self, total: int | None, *, unit: str = "samples", enabled: bool | None = None,
                 stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.unit = unit
        self.done = 0
        self.interval = interval
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n: int) -> None:
        """Record ``n`` more finished units."""
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            line = (f"\r[{bar:<30}] {self.done:,}/{self.total:,} {self.unit} "
                    f"{rate:,.0f}/s ETA {eta:,.1f}s ")
        else:
            line = f"\r{self.done:,} {self.unit} {rate:,.0f}/s "
        self.stream.write(line)
        self.stream.flush()
