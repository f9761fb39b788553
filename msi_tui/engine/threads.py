"""Threads that never end in silence."""

from __future__ import annotations

import threading
from collections.abc import Callable


def start_guarded(target: Callable[[], None], name: str,
                  on_death: Callable[[str, BaseException], None]) -> threading.Thread:
    """Start a daemon thread running `target`; should it raise, `on_death(name, exc)` is told
    (a thread gone silently would leave work undone while all looks fine)."""
    def run() -> None:
        try:
            target()
        except BaseException as exc:
            on_death(name, exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
