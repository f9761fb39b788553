"""One upload being rebuilt: chunks written at their offset, hashed as they line up.

Memory stays bounded whatever the file size: chunk bytes go straight to the staged file,
and what was received is a contiguous prefix count plus the (normally empty) set of chunks
that arrived ahead of it. Chunks of one upload arrive in order within their partition, so
the digest is computed as they come and verification needs no second read: each run of
in-order chunks is hashed where it is written, by the DiskWriter from the same buffer.

Runs that start and end on a page boundary are written with O_DIRECT where the filesystem
allows it: the bytes are copied into a reused aligned buffer and go from there to the disk,
not through the page cache. Buffered, filling fresh page-cache pages and waiting for their
writeback cost 1.0-2.8 s of CPU per GiB here; direct, 0.15 s. A DiskWriter's threads copy,
hash and write those runs while the rebuilding thread goes on with the next records.

O_DIRECT, the memory files, the page cache let go of and the libc calls made through ctypes
(fallocate, sync_file_range) are Linux speed-ups, each used only where
msi_tui.engine.platform_caps says so. Without them (other systems, MSI_TUI_PORTABLE set)
the same steps are plain buffered writes, blocks are allocated as they are written and the
fsync before publishing does all the flushing; ctypes is not imported.
"""

from __future__ import annotations

import errno
import mmap
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from msi_tui.engine.digest import Hasher, keeps_gil_for_small_updates, new_hasher
from msi_tui.engine.platform_caps import caps
from msi_tui.engine.wire import RecordMeta, WireError, check_index

try:
    import fcntl  # (sets O_DIRECT on an open file; POSIX only, like O_DIRECT itself)
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

# Disk space is reserved ahead of the writes in steps: writing into reserved blocks costs
# the kernel far less than allocating them page by page (a quarter of the CPU on ext4 here),
# while a record that declares a huge size can claim no more than one step at a time. Each
# finished step is handed to the disk at once, so the fsync before publishing has little
# left to wait for and dirty pages do not pile up in memory; the step before that, on disk by
# then, leaves the page cache (see release_cache).
PREALLOCATE_STEP = 64 << 20
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4
_fallocate = _sync_file_range = None  # both Linux only: elsewhere blocks are allocated and flushed as written
if caps.libc:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)  # the symbols already loaded, libc among them (no ldconfig run)
    _fallocate = getattr(_libc, "fallocate", None)
    _sync_file_range = getattr(_libc, "sync_file_range", None)
    if _fallocate is not None:  # (fd, mode, offset, length)
        _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if _sync_file_range is not None:  # (fd, offset, length, flags)
        _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve blocks for [offset, offset+length) where the filesystem can."""
    if _fallocate is not None:
        _fallocate(fd, 0, offset, length)


def start_writeback(fd: int, offset: int, length: int) -> None:
    if _sync_file_range is not None:
        _check(_sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE))


def wait_written(fd: int, offset: int, length: int) -> None:
    """Return once [offset, offset+length) is on disk (its writeback started and finished)."""
    if _sync_file_range is not None:
        _check(_sync_file_range(fd, offset, length,
                                _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER))


def _check(result: int) -> None:
    """A writeback error must not pass unseen until (or past) the fsync."""
    if result != 0:
        import ctypes  # (imported already: only the ctypes calls come here)

        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def release_cache(fd: int, offset: int = 0, length: int = 0) -> None:
    """Let go of the page cache holding [offset, offset+length) (0: to the end), which must
    be on disk already (clean pages are the ones dropped). Rebuilt files then take no more
    memory than a step or two, so a long transfer does not push what the machine keeps hot
    (the broker's log, say) out of memory, and new writes reuse pages just freed: on a VM,
    never-touched pages made the copy into the page cache ~47 % of the reconstructor's CPU
    (perf: copy_folio_from_iter_atomic). Elsewhere (no caps.drop_cache) it does nothing."""
    if not caps.drop_cache:
        return
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # best effort: only memory is at stake (AttributeError: not POSIX)
        pass


O_DIRECT = getattr(os, "O_DIRECT", 0) if caps.direct_io and fcntl is not None else 0  # 0: not used here
DIRECT_ALIGN = 4096  # offset, length and memory of a direct write: a page, a multiple of any block size in use
DIRECT_BUFFER_BYTES = 1 << 20  # per rebuilding thread
_direct_buffers = threading.local()


def _direct_buffer() -> memoryview:
    """This thread's aligned buffer (anonymous memory is page aligned), reused for every
    direct write so its pages stay in place."""
    view = getattr(_direct_buffers, "view", None)
    if view is None:
        view = _direct_buffers.view = memoryview(_aligned_buffer())
    return view


def _aligned_buffer() -> mmap.mmap:
    return mmap.mmap(-1, DIRECT_BUFFER_BYTES)


Chunk = bytes | memoryview  # a chunk as received, or a part of one cut without a copy


def _fill(chunks: Sequence[Chunk], take: Callable[[], memoryview]) -> Iterator[memoryview]:
    """Copy the chunks into aligned buffers got from `take`, yielding each one's filled part
    when it is full and at the end (the caller writes it before asking for the next)."""
    view, filled = None, 0
    for data in chunks:
        taken = 0
        while taken < len(data):
            if view is None:
                view = take()
            n = min(len(data) - taken, len(view) - filled)
            view[filled:filled + n] = data if n == len(data) else memoryview(data)[taken:taken + n]
            filled += n
            taken += n
            if filled == len(view):
                yield view
                view, filled = None, 0
    if view is not None:
        yield view[:filled]


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


JOIN_CHUNKS_BELOW = 64 << 10  # (see hash_chunks)
WRITE_RUN_BYTES = 1 << 20  # in-order chunks written by one pwritev ...
WRITE_RUN_CHUNKS = 512  # ... within the system's limit on buffers per call (IOV_MAX 1024)


def hash_chunks(digest: Hasher, chunks: Sequence[Chunk]) -> None:
    """Small chunks are joined, one update for all, where each update lets go of the GIL and
    must win it back (see keeps_gil_for_small_updates). Large ones are hashed one by one:
    joining them is a copy."""
    large = sum(len(c) for c in chunks) // max(1, len(chunks)) >= JOIN_CHUNKS_BELOW
    if large or keeps_gil_for_small_updates(digest):
        for chunk in chunks:
            digest.update(chunk)
    else:
        digest.update(b"".join(chunks))


class _Buffer:
    """A page-aligned buffer a DiskWriter copies a run into. Backed by a memory file where
    the system has them, so one pwritev makes the copy with the GIL let go: copied by the
    rebuilding thread, 1 GiB of chunks fresh from the network held the GIL ~0.4 s here."""

    def __init__(self) -> None:
        self._fd = os.memfd_create("msi-tui-run", getattr(os, "MFD_CLOEXEC", 0)) if caps.memfd else -1
        if self._fd >= 0:
            weakref.finalize(self, os.close, self._fd)
            os.ftruncate(self._fd, DIRECT_BUFFER_BYTES)
            self._map = mmap.mmap(self._fd, DIRECT_BUFFER_BYTES)
        else:
            self._map = _aligned_buffer()
        self._view = memoryview(self._map)

    def fill(self, chunks: Sequence[Chunk]) -> memoryview:
        """Copy the chunks (at most the buffer's size) to its start; their bytes in it."""
        if self._fd < 0:
            return next(_fill(chunks, lambda: self._view))
        return self._view[:pwritev_all(self._fd, chunks, 0)]


# A job: the descriptor and offset to write at (fd None: hash only), the chunks, the digest
# to update with them first (None: write only), the Future to settle, the buffer it holds.
_Job = tuple[int | None, Sequence[Chunk], int, Hasher | None, Future[None], _Buffer]


def _split(chunks: Sequence[Chunk], size: int) -> Iterator[list[Chunk]]:
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


class DiskWriter:
    """Threads copying, hashing and writing what a rebuilding thread hands them, while that
    thread goes on with the next records. One copies each run into an aligned buffer (by
    the kernel where it can, see _Buffer: the rebuilding thread hands over a list and holds
    the GIL for nothing more) and updates the digest from that very buffer, run after run
    in order; `writers` threads make the direct writes, each returning only once the device
    has the bytes (~1 ms a MiB here). So the next run is hashed while the last is written,
    and the device has a second write waiting: with one thread doing all of it, a 1 GiB
    file took 1.2-1.3x as long here. All three steps let go of the GIL. At most `buffers`
    runs' bytes wait here; a job that only hashes (a run the rebuilding thread wrote
    itself) holds a buffer too."""

    def __init__(self, name: str, buffers: int = 4, writers: int = 2) -> None:
        self._free: queue.SimpleQueue[_Buffer] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(_Buffer())
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writes: queue.SimpleQueue[tuple[int, memoryview, int, Future[None], _Buffer] | None] = (
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
        for part in _split(chunks, DIRECT_BUFFER_BYTES):
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
                        data = buffer.fill(chunks)
                    except OSError:  # (no memory for the copy) hashed all the same: a failed
                        if digest is not None:  # write is retried unhashed
                            hash_chunks(digest, chunks)
                        raise
                    if digest is not None:  # (before the write, for the same reason)
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
    reserved: int = 0  # bytes of the staged file preallocated so far
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
        if offset + left > self.reserved:
            self._reserve(offset + left)
        if offset % DIRECT_ALIGN == 0 and left % DIRECT_ALIGN == 0 and self._set_direct(True):
            if hand_over and self.writer is not None:
                return self.writer.write(self.fd, offset, buffers, digest)
            try:
                at = offset
                for view in _fill(buffers, _direct_buffer):
                    pwrite_all(self.fd, view, at)
                    at += len(view)
                return self._hash_written(buffers, digest)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.direct = False  # the filesystem takes O_DIRECT but not such writes: buffered from now on
        self._set_direct(False)
        pwritev_all(self.fd, buffers, offset)
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
        if on and not (self.direct and O_DIRECT):
            return False
        if on != self._direct_on:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | O_DIRECT if on else flags & ~O_DIRECT)
            except OSError:
                if not on:
                    raise
                self.direct = False  # this filesystem has no direct I/O
                return False
            self._direct_on = on
        return True

    def _reserve(self, end: int) -> None:
        if end > self.reserved + PREALLOCATE_STEP:
            return  # a chunk far ahead of the others: it allocates its own blocks
        if self.reserved:
            start_writeback(self.fd, max(0, self.reserved - PREALLOCATE_STEP), PREALLOCATE_STEP)
        if self.reserved >= 2 * PREALLOCATE_STEP:
            done = self.reserved - 2 * PREALLOCATE_STEP  # its writeback started one step ago
            wait_written(self.fd, done, PREALLOCATE_STEP)
            release_cache(self.fd, done, PREALLOCATE_STEP)
        step_end = min(self.meta.size, self.reserved + PREALLOCATE_STEP)
        # Best effort: without it (no space for a whole step, an unsupported filesystem)
        # the writes allocate as they go and a full disk shows at the write itself. Never
        # more than twice what arrived: a record that declares a huge size but brings little
        # reserves little.
        length = min(step_end, 2 * end) - self.reserved
        if length > 0:
            preallocate(self.fd, self.reserved, length)
        self.reserved = step_end

    @property
    def complete(self) -> bool:
        return self.contiguous == self.meta.count and bool(self.expected_digest)

    def seal(self) -> None:
        """All chunks are in: hand the last run to the writer and start its trip to the disk,
        without waiting for either (verified() waits for the hash)."""
        self.flush()
        start_writeback(self.fd, 0, 0)

    def verified(self) -> bool:
        """True when the staged bytes hash to the digest the uploader sent (all of them
        in the staged file by then)."""
        self.flush()
        self.settle()
        return self._digest.hexdigest() == self.expected_digest
