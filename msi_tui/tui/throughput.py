"""Throughput from a growing byte counter, sampled at each refresh."""

from __future__ import annotations

from collections import deque

HISTORY = 120  # samples kept for the sparkline: about 24 s at 5 Hz


class RateMeter:
    """Turns successive (byte total, snapshot time) readings into a rate and a history.

    It uses the snapshot's own timestamp, not the time of the refresh, so the figure is right
    even when the UI timer runs late, and a scripted fake engine gives the same numbers on
    every run. A reading with the same timestamp as the last one adds nothing.
    """

    def __init__(self, history: int = HISTORY) -> None:
        # Starts full of zeros: the sparkline scrolls in from the right against a zero
        # baseline, and always has more samples than cells (Sparkline skips empty buckets).
        self.samples: deque[float] = deque([0.0] * history, maxlen=history)
        self.rate: float | None = None
        self.readings = 0
        """How many samples were taken: a cheap "did anything change" for the sparkline."""
        self._last: tuple[int, float] | None = None

    def update(self, total_bytes: int, at: float) -> float | None:
        """Record a reading; return the current rate in bytes per second (None until known)."""
        if self._last is not None:
            last_bytes, last_at = self._last
            elapsed = at - last_at
            if elapsed <= 0:
                return self.rate
            # A counter that went backwards means the service restarted: count from here.
            self.rate = max(0, total_bytes - last_bytes) / elapsed
            self.samples.append(self.rate)
            self.readings += 1
        self._last = (total_bytes, at)
        return self.rate
