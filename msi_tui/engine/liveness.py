"""Lock files that tell whether the process that made them still runs.

A service holds an `flock` on a file of its own for as long as it runs; the kernel lets go
of it when the process dies, SIGKILL included. A service starting later can thus tell what
a killed one left behind (staged files, unfinished uploads) from what a running one holds.
On Windows (no flock) a lock on the file's first byte plays the same part.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _lock(fd: int) -> None:
    """Take the lock without waiting; OSError when another process holds it."""
    if sys.platform == "win32":
        import msvcrt
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def hold(path: Path) -> int:
    """Create `path` locked by this process until it closes the descriptor returned (or dies).
    Locked under a passing name, then renamed: nobody ever finds `path` unlocked."""
    if sys.platform == "win32":  # (an open file cannot be renamed there)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        _lock(fd)
        return fd
    taking = path.with_name(path.name + ".taking")
    fd = os.open(taking, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
    try:
        _lock(fd)
        os.rename(taking, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def held(path: Path) -> bool:
    """Whether a running process holds `path`; True when that cannot be told (another user's
    file, say): what a live service holds is never taken from it."""
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        _lock(fd)
    except OSError:
        return True
    finally:
        os.close(fd)  # (lets go of the lock, where it was taken)
    return False
