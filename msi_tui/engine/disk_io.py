"""Positioned writes of a rebuilt file, directly to the disk where the filesystem allows it.

A run of chunks that starts and ends on a page boundary can be written with O_DIRECT: its
bytes are copied into an aligned buffer and go from there to the device, not through the
page cache, which costs the kernel far less CPU than filling and writing back fresh cache
pages. O_DIRECT is a Linux speed-up used only where msi_tui.engine.platform_caps says so;
elsewhere every write is a plain buffered one and the fsync before publishing flushes it.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterator, Sequence

from msi_tui.engine.platform_caps import caps

try:
    import fcntl  # (sets O_DIRECT on an open file; POSIX only, like O_DIRECT itself)
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

O_DIRECT = getattr(os, "O_DIRECT", 0) if caps.direct_io and fcntl is not None else 0  # 0: not used here
DIRECT_ALIGN = 4096  # offset, length and memory of a direct write: a page, a multiple of any block size in use
DIRECT_BUFFER_BYTES = 1 << 20

Chunk = bytes | memoryview  # a chunk as received, or a part of one cut without a copy


def set_direct(fd: int, on: bool) -> bool:
    """Set or clear O_DIRECT on an open file; False when the filesystem refuses to set it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_DIRECT if on else flags & ~O_DIRECT)
    except OSError:
        if not on:
            raise
        return False
    return True


def aligned_buffer() -> memoryview:
    """A buffer for direct writes (anonymous memory is page aligned)."""
    return memoryview(mmap.mmap(-1, DIRECT_BUFFER_BYTES))


_thread_buffers = threading.local()


def write_direct(fd: int, chunks: Sequence[Chunk], offset: int) -> None:
    """Write the chunks at `offset` of `fd`, which has O_DIRECT set, through this thread's
    aligned buffer (reused for every write, so its pages stay in place)."""
    view = getattr(_thread_buffers, "view", None)
    if view is None:
        view = _thread_buffers.view = aligned_buffer()
    for part in split(chunks, DIRECT_BUFFER_BYTES):
        data = copy_into(view, part)
        pwrite_all(fd, data, offset)
        offset += len(data)


def split(chunks: Sequence[Chunk], size: int) -> Iterator[list[Chunk]]:
    """The chunks in consecutive parts of `size` bytes (the last may be shorter), a chunk
    that straddles two parts cut with memoryviews, not copied."""
    part: list[Chunk] = []
    room = size
    for data in chunks:
        while len(data) > room:
            view = memoryview(data)
            part.append(view[:room])
            yield part
            data, part, room = view[room:], [], size
        if data:
            part.append(data)
            room -= len(data)
        if room == 0:
            yield part
            part, room = [], size
    if part:
        yield part


def copy_into(buffer: memoryview, chunks: Sequence[Chunk]) -> memoryview:
    """Copy the chunks (a buffer's worth at most) to the start of `buffer`; their bytes there."""
    filled = 0
    for data in chunks:
        buffer[filled:filled + len(data)] = data
        filled += len(data)
    return buffer[:filled]


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:  # (a short write goes on; the rest of a direct one off the page boundary fails EINVAL)
        written = os.pwrite(fd, data, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data, offset = data[written:], offset + written


def pwritev_all(fd: int, buffers: Sequence[Chunk], offset: int) -> int:
    """Write the buffers one after the other at `offset`; returns the bytes written (all)."""
    total = left = sum(len(b) for b in buffers)
    while left:
        written = os.pwritev(fd, buffers, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        offset, left = offset + written, left - written
        if left:  # a short write: go on with the rest
            rest = list(buffers)
            while written >= len(rest[0]):
                written -= len(rest.pop(0))
            rest[0] = memoryview(rest[0])[written:]
            buffers = rest
    return total
