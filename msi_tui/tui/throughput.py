"""Throughput from growing byte counters, sampled at each refresh: a pane's and each file's."""

from __future__ import annotations

from collections import deque

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import RATE_AFTER_S, fraction_done

HISTORY = 120  # samples kept for the sparkline: about 24 s at 5 Hz
WINDOW_S = 5.0  # the figures shown are averages over this long (help says so)


class Window:
    """(time, byte total) readings over the last WINDOW_S: the rate is the bytes gained over
    the time between the oldest and the newest reading."""

    def __init__(self, seconds: float = WINDOW_S) -> None:
        self.seconds = seconds
        self.readings: deque[tuple[float, float]] = deque()

    def add(self, at: float, total: float) -> None:
        if self.readings and total < self.readings[-1][1]:
            self.readings.clear()  # a counter that went backwards: the service restarted
        self.readings.append((at, total))
        while len(self.readings) > 2 and at - self.readings[1][0] >= self.seconds:
            self.readings.popleft()

    def rate(self) -> float | None:
        if len(self.readings) < 2:
            return None
        (t0, b0), (t1, b1) = self.readings[0], self.readings[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


class RateMeter:
    """Turns successive (byte total, snapshot time) readings into a rate and a history.

    It uses the snapshot's own timestamp, not the time of the refresh, so the figure is right
    even when the UI timer runs late, and a scripted fake engine gives the same numbers on
    every run. A reading with the same timestamp as the last one adds nothing. The figure is
    the average over the last WINDOW_S (steady to read); the sparkline shows each interval.
    """

    def __init__(self, history: int = HISTORY) -> None:
        # Starts full of zeros: the sparkline scrolls in from the right against a zero
        # baseline, and always has more samples than cells (Sparkline skips empty buckets).
        self.samples: deque[float] = deque([0.0] * history, maxlen=history)
        self.rate: float | None = None
        self.readings = 0
        """How many samples were taken: a cheap "did anything change" for the sparkline."""
        self._last: tuple[int, float] | None = None
        self._window = Window()

    def update(self, total_bytes: int, at: float) -> float | None:
        """Record a reading; return the current rate in bytes per second (None until known)."""
        if self._last is not None:
            last_bytes, last_at = self._last
            elapsed = at - last_at
            if elapsed <= 0:
                return self.rate
            self.samples.append(max(0, total_bytes - last_bytes) / elapsed)
            self.readings += 1
        self._last = (total_bytes, at)
        self._window.add(at, total_bytes)
        self.rate = self._window.rate()
        return self.rate


class FileRates:
    """Each file's own rate over the last WINDOW_S, once it has been on its way RATE_AFTER_S
    (a file done in a blink has no rate worth showing), and the time it still needs."""

    def __init__(self) -> None:
        self._windows: dict[str, Window] = {}

    def update(self, files: list[FileProgress], at: float) -> None:
        """Take one reading of every file in flight; forget the others."""
        active = {f.upload_id or f.path: f for f in files if f.finished is None}
        for key in list(self._windows):
            if key not in active:
                del self._windows[key]
        for key, f in active.items():
            self._windows.setdefault(key, Window()).add(at, fraction_done(f) * f.size)

    def rate(self, f: FileProgress, at: float) -> float | None:
        """Bytes per second: over the window while in flight (the average since it started
        until the window has two readings), the average of the whole file once finished."""
        took = (f.finished or at) - f.started
        if took < RATE_AFTER_S:
            return None
        window = self._windows.get(f.upload_id or f.path)
        rate = window.rate() if window is not None and f.finished is None else None
        return rate if rate is not None else fraction_done(f) * f.size / took

    def left(self, f: FileProgress, at: float) -> float | None:
        """Seconds still needed at the current rate (None when finished, too new or stalled)."""
        rate = self.rate(f, at)
        if f.finished is not None or not rate:
            return None
        return (1 - fraction_done(f)) * f.size / rate
