"""Threads that copy, hash and write a rebuilding thread's runs while it goes on with the
next records (see msi_tui.engine.assembly)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

from msi_tui.engine.digest import Hasher, hash_chunks
from msi_tui.engine.disk_io import DIRECT_BUFFER_BYTES, Chunk, aligned_buffer, copy_into, pwrite_all, split

# A job: the descriptor and offset to write at (fd None: hash only), the chunks, the digest
# to update with them first (None: write only), the Future to settle, the buffer it holds.
_Job = tuple[int | None, Sequence[Chunk], int, Hasher | None, Future[None], memoryview]


class DiskWriter:
    """One thread copies each run handed over into an aligned buffer and updates the digest
    from that very buffer, run after run in order; `writers` threads make the direct writes,
    each returning only once the device has the bytes. So the next run is hashed while the
    last is written, the device has a second write waiting, and the rebuilding thread only
    hands over a list: all three steps let go of the GIL. At most `buffers` runs' bytes
    wait here; a job that only hashes (a run the rebuilding thread wrote itself) holds a
    buffer too."""

    def __init__(self, name: str, buffers: int = 4, writers: int = 2) -> None:
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(aligned_buffer())
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writes: queue.SimpleQueue[tuple[int, memoryview, int, Future[None], memoryview] | None] = (
            queue.SimpleQueue())
        threading.Thread(target=self._prepare, name=name, daemon=True).start()
        self._writers = writers
        for i in range(writers):
            threading.Thread(target=self._write, name=f"{name}-io{i}", daemon=True).start()

    def write(self, fd: int, offset: int, chunks: Sequence[Chunk], digest: Hasher | None = None) -> list[Future[None]]:
        """Queue the chunks' write at `offset` of `fd`, which has O_DIRECT set, after
        updating `digest` with them (waiting for a free buffer when all are taken); one
        Future a buffer's worth."""
        writes = []
        for part in split(chunks, DIRECT_BUFFER_BYTES):
            write: Future[None] = Future()
            self._jobs.put((fd, part, offset, digest, write, self._free.get()))
            writes.append(write)
            offset += sum(len(c) for c in part)
        return writes

    def hash(self, digest: Hasher, chunks: Sequence[Chunk]) -> Future[None]:
        """Queue an update of `digest` with chunks written elsewhere (in order with the rest)."""
        done: Future[None] = Future()
        self._jobs.put((None, chunks, 0, digest, done, self._free.get()))
        return done

    def close(self) -> None:
        self._jobs.put(None)

    def _prepare(self) -> None:
        while (job := self._jobs.get()) is not None:
            fd, chunks, offset, digest, done, buffer = job
            try:
                if fd is None:
                    if digest is not None:
                        hash_chunks(digest, chunks)
                    done.set_result(None)
                else:
                    try:
                        data = copy_into(buffer, chunks)
                    except Exception:  # hashed all the same: settle() writes a failed run again unhashed
                        if digest is not None:
                            hash_chunks(digest, chunks)
                        raise
                    if digest is not None:  # (before the write: a failed write is retried unhashed)
                        digest.update(data)
                    self._writes.put((fd, data, offset, done, buffer))
                    continue
            except Exception as exc:  # (whatever it is, the rebuilding thread waiting for it hears of it)
                done.set_exception(exc)
            self._free.put(buffer)
        for _ in range(self._writers):
            self._writes.put(None)

    def _write(self) -> None:
        while (job := self._writes.get()) is not None:
            fd, data, offset, done, buffer = job
            try:
                pwrite_all(fd, data, offset)
                done.set_result(None)
            except Exception as exc:  # (as above)
                done.set_exception(exc)
            self._free.put(buffer)
