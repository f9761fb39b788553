"""What this system offers beyond portable Python, decided in this one place.

Everything msi-tui needs works with Python's portable file I/O and watchdog's polling
observer; a few Linux facilities make it faster or tighter, and each is used only where
`caps` says so:

- `inotify`: the watcher hears each writer's close (watchdog's inotify observer), so a file
  is sent once its settle window ends; without it, a file is sent once it stayed unchanged
  for the quiet period (see msi_tui.engine.watch).
- `libc`: Linux calls into libc through ctypes (fallocate, sync_file_range) that reserve a
  rebuilt file's blocks ahead and start its writeback step by step (msi_tui.engine.assembly).
- `direct_io`, `memfd`, `drop_cache`: O_DIRECT writes, memory-file copy buffers and
  posix_fadvise(DONTNEED) for rebuilt files (the same module).

`MSI_TUI_PORTABLE=1` turns all of them off, so the path taken on Windows and macOS can be
run (and is tested) on Linux: nothing then loads libc or opens an inotify descriptor.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from functools import cached_property

PORTABLE_ENV = "MSI_TUI_PORTABLE"
WITHOUT_ENV = "MSI_TUI_WITHOUT"  # names of speed-ups to leave off, comma separated (measuring each one's gain)
SPEEDUPS = ("inotify", "libc", "direct_io", "memfd", "drop_cache", "disk_threads", "gc_tuning", "malloc_arenas")


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
    def libc(self) -> bool:
        return self.linux and "libc" not in self.without

    @cached_property
    def direct_io(self) -> bool:
        return not self.portable and "direct_io" not in self.without and bool(getattr(os, "O_DIRECT", 0))

    @cached_property
    def memfd(self) -> bool:
        return not self.portable and "memfd" not in self.without and hasattr(os, "memfd_create")

    @cached_property
    def drop_cache(self) -> bool:
        return (not self.portable and "drop_cache" not in self.without
                and hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED"))

    @cached_property
    def disk_threads(self) -> bool:
        return not self.portable and "disk_threads" not in self.without

    @cached_property
    def gc_tuning(self) -> bool:
        return not self.portable and "gc_tuning" not in self.without

    @cached_property
    def malloc_arenas(self) -> bool:
        return self.linux and "malloc_arenas" not in self.without

    def describe(self) -> str:
        """One line for a log or a test report: which speed-ups are on."""
        if self.portable:
            return f"portable path ({PORTABLE_ENV} set): no platform speed-ups"
        on = [name for name in SPEEDUPS if getattr(self, name)]
        return "speed-ups: " + ", ".join(on) if on else "portable path: no platform speed-ups here"


caps = Caps()
