"""What this system offers beyond portable Python, decided in this one place.

Everything msi-tui needs works with Python's portable file I/O and watchdog's polling
observer; a few Linux facilities make it faster or tighter, and each is used only where
`caps` says so:

- `inotify`: the watcher hears each writer's close (watchdog's inotify observer), so a file
  is sent once its settle window ends; without it, a file is sent once it stayed unchanged
  for the quiet period (see msi_tui.engine.watch).
- `direct_io`: rebuilt files written with O_DIRECT (msi_tui.engine.disk_io).

`MSI_TUI_PORTABLE=1` turns them off, so the path taken on Windows and macOS can be run (and
is tested) on Linux: nothing then loads libc or opens an inotify descriptor. One speed-up is
plain Python and on everywhere: `disk_threads`, each rebuilding thread handing its runs to
threads that copy, hash and write them while it goes on (msi_tui.engine.disk_writer).

docs/benchmarks.md shows what each one earns; `MSI_TUI_WITHOUT=direct_io,...` leaves the
named ones off, to measure that again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from functools import cached_property

PORTABLE_ENV = "MSI_TUI_PORTABLE"
WITHOUT_ENV = "MSI_TUI_WITHOUT"  # names of speed-ups to leave off, comma separated (measuring each one's gain)
PLATFORM_SPEEDUPS = ("inotify", "direct_io")  # (disk_threads is plain Python)


def portable_forced(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the environment asks for the portable path (1, true, yes or on)."""
    return environ.get(PORTABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class Caps:
    """The speed-ups available here; each is looked at (once) where first asked for."""

    def __init__(self, environ: Mapping[str, str] = os.environ, platform: str = sys.platform) -> None:
        self.portable = portable_forced(environ)
        self.linux = platform.startswith("linux") and not self.portable
        self.without = {n.strip() for n in environ.get(WITHOUT_ENV, "").split(",") if n.strip()}

    @cached_property
    def inotify(self) -> bool:
        """Whether watchdog's inotify observer can be used (it loads libc through ctypes:
        a libc without inotify, such as some minimal ones, leaves it out)."""
        if not self.linux or "inotify" in self.without:
            return False
        try:
            from watchdog.observers.inotify import InotifyObserver  # noqa: F401
        except Exception:  # (watchdog's UnsupportedLibcError, an OSError loading libc, ...)
            return False
        return True

    @cached_property
    def direct_io(self) -> bool:
        return not self.portable and "direct_io" not in self.without and bool(getattr(os, "O_DIRECT", 0))

    @cached_property
    def disk_threads(self) -> bool:
        return "disk_threads" not in self.without

    def describe(self) -> str:
        """One line for a log or a test report: which platform speed-ups are on."""
        if self.portable:
            return f"portable path ({PORTABLE_ENV} set): no platform speed-ups"
        on = [name for name in PLATFORM_SPEEDUPS if getattr(self, name)]
        return "speed-ups: " + ", ".join(on) if on else "portable path: no platform speed-ups here"


caps = Caps()
