"""Installed (through PYTHONPATH) in every Python process of the portable test run, the
pytest sessions and each `python -m msi_tui` they start, when $MSI_TUI_PORTABLE_GUARD names
a report file (see tests/test_portable.py).

Loading a shared library through ctypes (ctypes.CDLL, cdll.LoadLibrary, PyDLL: all go
through ctypes._dlopen) is refused, as on a system without a usable libc, and each attempt
is written to the report with the module that made it. watchdog's own import-time probe
for inotify is refused too: watchdog then takes the polling observer for its default, as it
does where there is no inotify, and the run shows that nothing of msi-tui needed it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn


def _write(report: str, entry: dict[str, Any]) -> None:
    entry.update(pid=os.getpid(), argv=sys.orig_argv[1:5])
    with open(report, "a", encoding="utf-8") as out:  # one short line a write: appends do not interleave
        out.write(json.dumps(entry) + "\n")


def _install(report: str) -> None:
    import ctypes

    from watchdog.utils import UnsupportedLibcError

    class LibraryRefused(UnsupportedLibcError, OSError):
        """What watchdog's probe takes for "no inotify here", and code that tunes the
        system best effort (catching OSError) for "not this system"."""

    def refuse(name: object, *_args: object, **_kwargs: object) -> NoReturn:
        caller = sys._getframe(1)
        while caller.f_back is not None and caller.f_globals.get("__name__", "").startswith("ctypes"):
            caller = caller.f_back  # (past CDLL.__init__ and LibraryLoader to whoever asked)
        _write(report, {"event": "refused", "library": str(name), "caller": caller.f_globals.get("__name__", "?")})
        raise LibraryRefused(f"the portable test run refuses to load {name!r} through ctypes")

    ctypes._dlopen = refuse  # type: ignore[attr-defined]
    _write(report, {"event": "guarded"})


if os.environ.get("MSI_TUI_PORTABLE_GUARD"):
    _install(os.environ["MSI_TUI_PORTABLE_GUARD"])
