"""A thread-safe sink between engine worker threads and the app's refresh timer.

The engine calls the buffer from its threads (a delivery callback, a consumer loop); the app
drains it about five times a second on its own thread. Nothing here touches a widget, and the
buffer never blocks a writer for longer than an append under a lock.
"""

from __future__ import annotations

import threading
from collections import deque

from msi_tui.engine.events import Event

DEFAULT_CAPACITY = 10_000


class EventBuffer:
    """A bounded queue of engine events: call it with an event, `drain()` it from the UI.

    When the UI falls behind (a burst of thousands of files), the oldest events are dropped
    rather than growing memory without limit; `drain()` reports how many were lost so the
    operator sees it in the log instead of a silent gap.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._events: deque[Event] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dropped = 0
        self.dropped_total = 0
        """Events dropped since the buffer was made (never reset)."""

    def __call__(self, event: Event) -> None:
        """The sink: record one event. Safe from any thread, never raises."""
        with self._lock:
            if len(self._events) == self.capacity:
                # deque(maxlen) drops the oldest on append; count it so drain() can say so.
                self._dropped += 1
                self.dropped_total += 1
            self._events.append(event)

    def drain(self) -> tuple[list[Event], int]:
        """Take every buffered event, oldest first, and the number dropped since last drain."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            dropped, self._dropped = self._dropped, 0
        return events, dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
