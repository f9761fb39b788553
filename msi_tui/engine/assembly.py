"""One upload being rebuilt: chunks written at their offset, hashed as they line up.

Memory stays bounded whatever the file size: chunk bytes go straight to the staged file,
and what was received is a contiguous prefix count plus the (normally empty) set of chunks
that arrived ahead of it. Chunks of one upload arrive in order within their partition, so
the digest is computed as they come and verification needs no second read: each run of
in-order chunks is hashed where it is written, from the same buffer.

Runs that start and end on a page boundary are written directly to the disk where the
filesystem allows it (msi_tui.engine.disk_io), by a DiskWriter's threads while the
rebuilding thread goes on with the next records; the rest go through the page cache.
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from msi_tui.engine import disk_io
from msi_tui.engine.digest import Hasher, hash_chunks, new_hasher
from msi_tui.engine.disk_writer import DiskWriter
from msi_tui.engine.wire import RecordMeta, WireError, check_index

WRITE_RUN_BYTES = 1 << 20  # in-order chunks written by one pwritev ...
WRITE_RUN_CHUNKS = 512  # ... within the system's limit on buffers per call (IOV_MAX 1024)


@dataclass
class Assembly:
    """State of one upload; the caller serialises access (one partition, one thread)."""

    meta: RecordMeta
    partition: int
    first_offset: int
    fd: int
    staged: Path
    contiguous: int = 0
    ahead: set[int] = field(default_factory=set)
    writer: DiskWriter | None = None  # None: hash and write on the calling thread
    expected_digest: str = ""  # from the end record, once it is in
    started: float = field(default_factory=time.monotonic)
    newest_ms: int = 0  # timestamp of its newest record (see msi_tui.engine.ledger)
    _digest: Hasher = field(init=False)  # updated run by run, as each is written
    _run: list[bytes] = field(default_factory=list)  # in-order chunks taken, not yet written nor hashed
    _run_start: int = 0  # index of the run's first chunk
    _run_bytes: int = 0
    direct: bool = True  # may the staged file be written with O_DIRECT (False once refused)
    _direct_on: bool = False  # whether the descriptor has O_DIRECT set now
    # Runs handed to the writer and not yet settled: their writes (or hashing), offset and
    # chunks (writes None: the handed-over write failed, to be written again).
    _writing: list[tuple[list[Future[None]] | None, int, list[bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._digest = new_hasher(self.meta.algorithm)

    def matches(self, meta: RecordMeta) -> bool:
        """A later record must describe the same file as the first one did."""
        m = self.meta
        return (m.path, m.size, m.chunk_size, m.count, m.algorithm, m.source, m.mtime_ns) == (
            meta.path, meta.size, meta.chunk_size, meta.count, meta.algorithm, meta.source, meta.mtime_ns)

    @property
    def received(self) -> int:
        """Chunks taken so far."""
        return self.contiguous + len(self.ahead)

    def has(self, index: int) -> bool:
        return index < self.contiguous or index in self.ahead

    def write(self, index: int, data: bytes) -> bool:
        """Take one chunk; False when it was already here (a harmless replay).

        A chunk that continues the file in order joins the run gathered for one pwritev
        (few system calls, few hand-overs of the GIL), hashed as it is written; call flush()
        before relying on the bytes being in the staged file. A chunk ahead of the others
        is written at once, and hashed once the chunks before it are in.
        """
        # Checked here, not only in decode: a chunk after the first names nothing but
        # its index, and one past the end would be written beyond the file (or at an offset
        # the filesystem refuses, which would read as a full disk and be retried for ever).
        check_index(index, self.meta.count)
        if self.ahead:
            self._take_ahead()  # (what an error stopped half-way: a retry carries on)
        if self.has(index):
            return False
        expected = self.meta.chunk_length(index)
        if len(data) != expected:
            raise WireError(f"chunk {index} has {len(data)} bytes, expected {expected}")
        if index != self.contiguous:
            self._write_at(index * self.meta.chunk_size, [data])
            self.ahead.add(index)
            return True
        self._extend_run(data)
        if self.ahead:
            self._take_ahead()
        return True

    def _extend_run(self, data: bytes) -> None:
        """Add the chunk at `contiguous` to the run. Raises (writing the run so far) before
        the chunk counts as taken: a retry starts clean."""
        index = self.contiguous
        if self._run and (index != self._run_start + len(self._run) or self._run_bytes >= WRITE_RUN_BYTES
                          or len(self._run) >= WRITE_RUN_CHUNKS):
            self.flush()
        if not self._run:
            self._run_start = index
        self._run.append(data)
        self._run_bytes += len(data)
        self.contiguous += 1

    def _take_ahead(self) -> None:
        """Chunks that arrived early and now continue the file: read back, they join the run,
        so the digest takes every byte in order (written again with it: a rare case)."""
        while self.contiguous in self.ahead:
            index = self.contiguous
            self._set_direct(False)  # (a direct read would need an aligned buffer)
            self._extend_run(os.pread(self.fd, self.meta.chunk_length(index), index * self.meta.chunk_size))
            self.ahead.discard(index)

    def flush(self) -> None:
        """Hash and write the gathered run, or hand both to the writer (see settle); on an
        error it stays gathered, to be written on a retry."""
        if self._run:
            offset = self._run_start * self.meta.chunk_size
            writes = self._write_at(offset, self._run, hand_over=True, digest=self._digest)
            if writes is not None:
                self._writing.append((writes, offset, self._run))
            self._run, self._run_bytes = [], 0

    def settle(self, wait: bool = True) -> None:
        """Return once the runs handed to the writer are in the staged file (`wait` False:
        only let go of those already written, so their bytes are not held any longer). One
        whose write failed is written again here; when that fails too the error is raised
        and the run stays, to be written on a retry."""
        while self._writing:
            writes, offset, run = self._writing[0]
            if writes is not None:
                if not wait and not all(write.done() for write in writes):
                    return
                try:
                    for write in writes:
                        write.result()
                except OSError as exc:
                    if exc.errno == errno.EINVAL:
                        self.direct = False  # (see _write_at)
                    self._writing[0] = (None, offset, run)
                    writes = None
            if writes is None:
                self._write_at(offset, run)
            self._writing.pop(0)

    def abandon(self) -> None:
        """Wait for the writes handed over, whatever comes of them: the staged file goes next."""
        for writes, _offset, _run in self._writing:
            for write in writes or ():
                write.exception()  # (waits; a failure no longer matters)
        self._writing.clear()

    def _write_at(self, offset: int, buffers: list[bytes], hand_over: bool = False,
                  digest: Hasher | None = None) -> list[Future[None]] | None:
        """Write the buffers at `offset`, directly where the run and the filesystem allow it,
        and once written update `digest` with them; `hand_over`: queue a direct write (and
        the hashing before it) on the writer and return its Futures instead. The hashing of
        a run written here goes to the writer as well when there is one, after what it was
        handed before: its Future is returned then."""
        left = sum(len(b) for b in buffers)
        if offset % disk_io.DIRECT_ALIGN == 0 and left % disk_io.DIRECT_ALIGN == 0 and self._set_direct(True):
            if hand_over and self.writer is not None:
                return self.writer.write(self.fd, offset, buffers, digest)
            try:
                disk_io.write_direct(self.fd, buffers, offset)
                return self._hash_written(buffers, digest)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False  # the filesystem takes O_DIRECT but not such writes: buffered from now on
        self._set_direct(False)
        disk_io.pwritev_all(self.fd, buffers, offset)
        return self._hash_written(buffers, digest)

    def _hash_written(self, chunks: list[bytes], digest: Hasher | None) -> list[Future[None]] | None:
        if digest is None:
            return None
        if self.writer is not None:
            return [self.writer.hash(digest, chunks)]
        hash_chunks(digest, chunks)
        return None

    def _set_direct(self, on: bool) -> bool:
        """Set or clear O_DIRECT on the staged file's descriptor; False when it cannot be set."""
        if on and not (self.direct and disk_io.O_DIRECT):
            return False
        if on != self._direct_on:
            if not disk_io.set_direct(self.fd, on):
                self.direct = False  # this filesystem has no direct I/O
                return False
            self._direct_on = on
        return True

    @property
    def complete(self) -> bool:
        return self.contiguous == self.meta.count and bool(self.expected_digest)

    def verified(self) -> bool:
        """True when the staged bytes hash to the digest the uploader sent (all of them
        in the staged file by then)."""
        self.flush()
        self.settle()
        return self._digest.hexdigest() == self.expected_digest
