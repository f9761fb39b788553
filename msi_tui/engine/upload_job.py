"""One file on its way: what is to be sent (`Job`), the reading and producing of its records
(`produce_file`), and the counting of their acknowledgements (`Delivery`).

Each file is read once, in order: every chunk is hashed and handed to librdkafka as it is
read, so the whole-file digest comes for free and goes out in the closing `end` record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from confluent_kafka import KafkaError

from msi_tui.engine import wire
from msi_tui.engine.digest import NAMES, Algorithm, new_hasher
from msi_tui.engine.stats import UploadStats
from msi_tui.engine.wire import shown_name

REPORT_EVERY = 16  # chunks per delivery report (see Delivery)
PRODUCED_REPORT_EVERY = 64  # chunks between updates of the shared produced-chunks counter
READ_BLOCK = 1 << 20  # bytes read and hashed at a time; chunks are produced as slices of it ...
READ_EACH_CHUNK_FROM = 64 << 10  # ... unless they are this large: a slice is a copy (produce()
# takes no memoryview), and one read per chunk costs less CPU for large chunks.
STOPPED = "stopped before it was completely sent"
DELETED = "deleted or moved away while it was being sent"
# A file held mid-way by a pause longer than this is withdrawn and sent again from its start
# on resume: a reconstructor ends an upload whose records stop for --abandon-after (600 s
# by default) while its partition moves on, and would then skip the rest of it.
HELD_MID_FILE_S = 120.0

# How an upload ended: every record acknowledged, or withdrawn because it failed, the
# uploader stopped, the file changed or a pause held it too long (both: it is sent again
# under a new id).
Outcome = Literal["done", "failed", "stopped", "changed", "held"]
Produce = Callable[[bytes, bytes, wire.Headers, Callable[[KafkaError | None, object], None] | None, int], bool]


@dataclass(frozen=True)
class Job:
    """A file (or a folder: its `dir` record) to send, under `relpath` on the other side."""

    path: Path
    relpath: str
    from_watch: bool
    attempt: int = 1
    folder_mtime_ns: int | None = None  # a folder, not a file

    @property
    def shown(self) -> str:
        return shown_name(self.relpath) + ("/" if self.folder_mtime_ns is not None else "")


def refusal(relpath: str) -> str | None:
    """Why a reconstructor would refuse a file sent under `relpath`, or None. Asked before
    anything of it is sent: the far end refuses such an upload, and the file would be
    reported uploaded here and be lost there. The rule is the reconstructor's own."""
    try:
        wire.check_relative_path(wire.path_bytes(relpath))
    except UnicodeEncodeError:  # (a surrogate no file name decodes to)
        return "its name cannot be sent; rename it to send it"
    except wire.WireError as exc:
        return f"a reconstructor would refuse its name ({exc}); rename it to send it"
    return None


class Delivery:
    """Counts one upload's acknowledgements; runs in the thread serving delivery reports.

    Only every REPORT_EVERY-th chunk, the last chunk and the closing record ask for a
    delivery report: the producer is idempotent with the gapless guarantee, so records of
    one upload (one key, one partition) are acknowledged in order and none can be lost
    while a later one succeeds. An acknowledged chunk i therefore vouches for chunks 0..i,
    and the closing record's for the whole file: one Python callback per 16 chunks instead
    of one per chunk. `ended(delivery, err)` is told of the closing record's report, or of
    the first failed one.
    """

    __slots__ = ("acked", "chunk_size", "chunks", "common", "ended", "job", "mtime_ns", "outcome", "partition",
                 "producing", "size", "started", "stats", "upload_id")

    def __init__(self, stats: UploadStats, ended: Callable[[Delivery, KafkaError | None], None], job: Job,
                 upload_id: str, size: int, mtime_ns: int, chunk_size: int, common: wire.Headers,
                 partition: int) -> None:
        self.stats, self.ended, self.job, self.upload_id, self.partition = stats, ended, job, upload_id, partition
        self.size, self.mtime_ns, self.chunk_size = size, mtime_ns, chunk_size
        self.chunks = wire.chunk_count(size, chunk_size)
        self.common = common
        self.acked = 0  # chunks 0..acked-1 are acknowledged
        self.outcome: Outcome | None = None  # set once, by Uploader._finish
        # The upload thread may still produce records of it: its abort must wait until not.
        self.producing = True
        self.started = time.monotonic()

    def reporter(self, index: int) -> Callable[[KafkaError | None, object], None] | None:
        """The delivery callback for chunk `index`, or None when a later one vouches for it."""
        if index % REPORT_EVERY != REPORT_EVERY - 1 and index != self.chunks - 1:
            return None
        return lambda err, _msg: self.chunks_acked(err, index + 1)

    def chunks_acked(self, err: KafkaError | None, through: int) -> None:
        if err is not None:
            self.ended(self, err)
            return
        stats = self.stats
        with stats.lock:
            newly = through - self.acked
            if newly <= 0:
                return
            stats.chunks_delivered += newly
            size, chunk = self.size, self.chunk_size
            stats.bytes_delivered += min(through * chunk, size) - min(self.acked * chunk, size)
            stats.table.bump(self.upload_id, newly)
            self.acked = through

    def closing_acked(self, err: KafkaError | None, _msg: object) -> None:
        if err is None:
            self.chunks_acked(None, self.chunks)
        self.ended(self, err)


@dataclass
class Producing:
    """What reading and producing a file needs from its uploader."""

    produce: Produce
    stats: UploadStats
    algorithm: Algorithm
    resumed: threading.Event  # clear while paused
    stopping: threading.Event  # quit was asked: no new chunks
    before_end: Callable[[Delivery], None]  # the end record is about to be produced


def produce_file(upload: Delivery, f: BinaryIO, how: Producing) -> tuple[Outcome, str] | None:
    """Produce every chunk and the closing record; None once all were produced, else how
    the upload ended instead."""
    job, size, cs, common = upload.job, upload.size, upload.chunk_size, upload.common
    key = upload.upload_id.encode()
    digest = new_hasher(how.algorithm)
    per_block = max(1, READ_BLOCK // cs) if cs < READ_EACH_CHUNK_FROM else 1
    block, block_start = b"", -per_block  # the bytes read ahead, and the chunk index they start at
    for index in range(upload.chunks):
        if not how.resumed.is_set():
            held_until = time.monotonic() + HELD_MID_FILE_S
            while not how.resumed.wait(0.2):
                if index and time.monotonic() > held_until and not how.stopping.is_set():
                    return "held", ""
        if how.stopping.is_set():
            return "stopped", STOPPED
        if upload.outcome is not None:  # its delivery failed: nothing more of it
            return None
        if index == block_start + per_block:
            # One read and one hash update per block rather than per chunk: each is a
            # system call or a release of the GIL that has to be won back.
            if os.fstat(f.fileno()).st_nlink == 0:  # an unlinked file still reads to its end
                return "failed", DELETED
            block_start, want = index, min(per_block * cs, size - index * cs)
            block = f.read(want)
            if len(block) != want:
                return "changed", ""
            digest.update(block)
        at = (index - block_start) * cs
        data = block if per_block == 1 else block[at:at + cs]
        if not how.produce(data, key, wire.chunk_headers(common, index), upload.reporter(index), upload.partition):
            return "stopped", STOPPED
        if index % PRODUCED_REPORT_EVERY == PRODUCED_REPORT_EVERY - 1 or index == upload.chunks - 1:
            with how.stats.lock:  # batched: one lock per chunk is measurable at 16 KiB
                how.stats.chunks_produced += index % PRODUCED_REPORT_EVERY + 1
    grew = f.read(1)
    try:
        after = os.stat(job.path)
    except FileNotFoundError:
        return "failed", DELETED
    if grew or (after.st_size, after.st_mtime_ns) != (size, upload.mtime_ns):
        return "changed", ""
    how.before_end(upload)
    hexdigest = digest.hexdigest()
    with how.stats.lock:
        how.stats.table.update(upload.upload_id, digest=f"{NAMES[how.algorithm]} {hexdigest}")
    if not how.produce(b"", key, wire.end_headers(common, hexdigest), upload.closing_acked, upload.partition):
        return "stopped", STOPPED
    return None
