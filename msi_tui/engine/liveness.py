"""Lock files that tell whether the process that made them still runs.

A service holds an `flock` on a file of its own for as long as it runs; the kernel lets go
of it when the process dies, SIGKILL included. A service starting later can thus tell what
a killed one left behind (staged files, unfinished uploads) from what a running one holds.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def hold(path: Path) -> int:
    """Create `path` locked by this process until it closes the descriptor returned (or dies).
    Locked under a passing name, then renamed: nobody ever finds `path` unlocked."""
    taking = path.with_name(path.name + ".taking")
    fd = os.open(taking, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(taking, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def held(path: Path) -> bool:
    """Whether a running process holds `path`; True when that cannot be told (another user's
    file, say): what a live service holds is never taken from it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # (lets go of the lock, where it was taken)
    return False
