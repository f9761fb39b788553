"""Applying one partition's records: chunks into staged files, verified files published.

A rebuilding thread owns a `Rebuilder` and applies batches of records of the partitions it
serves, in order. What every thread shares (the ledger, the uploads being rebuilt, the
receipts, the output folder) is in one `RebuildContext` (msi_tui.engine.rebuild_context),
under its lock where it changes.

Every failure is classified (msi_tui.engine.failures): a transient one holds the
partition, says why and retries; one that belongs to an upload ends that upload, with a
receipt and one message, and the partition goes on. A record is accounted in the ledger
only after it was applied or deliberately refused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from confluent_kafka import Message

from msi_tui.engine import digest, events, wire
from msi_tui.engine.assembly import Assembly
from msi_tui.engine.disk_writer import DiskWriter
from msi_tui.engine.events import Notice
from msi_tui.engine.failures import UNEXPECTED_RETRIES, classify, describe
from msi_tui.engine.kafka_records import headers_of, offset_of, partition_of, timestamp_of
from msi_tui.engine.output import Staged
from msi_tui.engine.rebuild_context import RebuildContext
from msi_tui.engine.receipts import Outcome, new_receipt

REJECTS_REPORTED_ONE_BY_ONE = 50  # then one report per thousand, so a flood cannot drown the log
RETRY_AFTER_S = 2.0
ORPHANS_REMEMBERED = 1024  # per thread: uploads already reported as missing their first chunk
_DISAGREES = "record disagrees with earlier records of the same upload"


class Rebuilder:
    """One rebuilding thread's state and work."""

    def __init__(self, ctx: RebuildContext, decode: Callable[[wire.ReadHeaders | None], wire.RecordMeta],
                 writer: DiskWriter | None) -> None:
        self.ctx = ctx
        self.decode = decode
        self.writer = writer
        # Uploads the current batch wrote to (a run may wait to be written) and the bytes it
        # wrote: the counters shown are brought up to date once a batch, not once a chunk.
        self.touched: dict[str, Assembly] = {}
        self.written = 0
        # Uploads the batch completed: verified and published together once it is applied.
        self.complete: dict[str, tuple[Assembly, Staged]] = {}
        self.orphans: OrderedDict[str, None] = OrderedDict()

    def close(self) -> None:
        """Let the writer's threads end (after what they were handed)."""
        if self.writer is not None:
            self.writer.close()

    # --- a batch -----------------------------------------------------------------------

    def apply(self, partition: int, generation: int, records: list[Message]) -> None:
        """Apply one partition's records in order, write what they left gathered, verify and
        publish the files they completed, then account for them in the ledger."""
        ctx = self.ctx
        with ctx.lock:  # (a batch is in offset order: when its first record is fresh, all are)
            if not ctx.ledger.fresh(partition, offset_of(records[0])):
                records = [m for m in records if ctx.ledger.fresh(partition, offset_of(m))]  # stale fetches
        if not records:
            return
        self.touched.clear()
        self.written = 0
        self.complete.clear()
        for msg in records:
            if not ctx.owns(partition, generation):
                return  # revoked: the next owner replays from the committed offset
            try:
                self._handle(msg)  # (the retrying wrapper only once it fails: this runs per chunk)
            except Exception as exc:
                if not self._until_done(partial(self._handle, msg), partition, generation, self._upload_of(msg), exc):
                    return  # revoked or stopping
        for assembly in list(self.touched.values()):
            if not self._until_done(partial(self._write_run, assembly), partition, generation, _known(assembly)):
                return
        # Revoked or stopping on the way: the files stay pinned to the offset, replayed later.
        for a, s in list(self.complete.values()):
            if not self._until_done(partial(self._verify, a, s), partition, generation, _known(a)):
                return
        if self.complete:  # one publish for the batch (see OutputFolder.publish)
            files = [s for _a, s in self.complete.values()]
            if not self._until_done(partial(ctx.output.publish, files), partition, generation, _known(None)):
                return
        for a, s in list(self.complete.values()):
            if s.released:
                self._settle(a, s)
            else:  # (an unexpected error kept coming back)
                self._end(a, "refused", "could not be saved under its name")
        if ctx.journal:
            ctx.journal.flush()
        last = records[-1]
        with ctx.stats.lock:
            ctx.stats.messages_read += len(records)
            ctx.stats.bytes_written += self.written
            for uid, assembly in self.touched.items():
                ctx.stats.table.update(uid, chunks_done=assembly.received)
        with ctx.lock:
            if not ctx.owns(partition, generation):
                return
            for uid, assembly in self.touched.items():
                ctx.ledger.touch(partition, uid, assembly.newest_ms)
            ctx.ledger.accounted(partition, offset_of(last), timestamp_of(last))
            silent = [ctx.assemblies[uid] for uid in ctx.ledger.abandoned(partition) if uid in ctx.assemblies]
        for a in silent:
            minutes = ctx.ledger.abandon_after_ms / 60000
            self._end(a, "abandoned", f"no record of it for {minutes:g} min while its partition moved on")

    def _until_done(self, step: Callable[[], None], partition: int, generation: int,
                    upload: Callable[[], Assembly | None], failed: Exception | None = None) -> bool:
        """Run one step of a batch (that already `failed` once, when given) until it succeeds
        or its failure is dealt with. Transient: retried while the partition waits (False
        when revoked or stopping first). Unexpected: retried UNEXPECTED_RETRIES times, then
        dealt with as the upload's own: `upload()` ends."""
        ctx = self.ctx
        unexpected = 0
        while ctx.owns(partition, generation):
            if failed is None:
                try:
                    step()
                except Exception as exc:
                    failed = exc
                else:
                    if ctx.blocked_by is not None:
                        self._unblocked()
                    return True
            error, failed = failed, None
            failure = classify(error)
            if failure == "transient":
                self._blocked(error)
                if ctx.stop.wait(RETRY_AFTER_S):
                    return False
                continue
            if failure == "unexpected" and unexpected < UNEXPECTED_RETRIES:
                unexpected += 1
                ctx.sink(Notice(level="warning", at=time.time(), message=(
                    f"partition {partition}: {describe(error)}; trying again ({unexpected}/{UNEXPECTED_RETRIES})")))
                if ctx.stop.wait(0.2):
                    return False
                continue
            a = upload()
            if a is not None:
                self._end(a, "refused", describe(error))
            return True  # (a record of no upload being rebuilt: see _handle's own refusals)
        return False

    def _upload_of(self, msg: Message) -> Callable[[], Assembly | None]:
        """The upload a record belongs to, as far as one is being rebuilt (its key)."""
        return lambda: self.ctx.assemblies.get((msg.key() or b"").decode("ascii", "replace"))

    # --- one record --------------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        """Apply one record. Raises only for trouble on our side (see _until_done)."""
        ctx = self.ctx
        value = msg.value() or b""
        headers = headers_of(msg)
        try:
            index = wire.next_chunk_index(headers)
            if index is not None:  # the common case: one more chunk of an upload begun earlier
                self._take_next_chunk(msg, index, value)
                return
            meta = self.decode(headers)
        except wire.WireError as exc:
            self._reject(msg, str(exc))
            return
        if meta.kind != "chunk" and value:
            self._reject(msg, f"{meta.kind} record carries data")
            return
        uid = meta.upload_id
        if meta.kind == "dir":
            self._make_folder(meta)
            return
        # No lock to read: only this thread changes its partitions' entries while it holds a batch.
        assembly = ctx.assemblies.get(uid)
        if assembly is None:
            if meta.kind != "chunk" or ctx.finished(uid):
                return  # a replay of an ended upload, or a withdrawn one we never started
            try:
                fd, staged = ctx.output.open_staged(uid)
            except OSError as exc:
                if classify(exc) != "upload":
                    raise  # (waits, or is tried again: see _until_done)
                self._refuse_unopened(meta, describe(exc))
                return
            partition, offset = partition_of(msg), offset_of(msg)
            assembly = Assembly(meta, partition, offset, fd, staged, writer=self.writer,
                                direct=ctx.direct_writes, newest_ms=timestamp_of(msg))
            with ctx.lock:
                ctx.assemblies[uid] = assembly
                ctx.ledger.open(partition, uid, offset, assembly.newest_ms)
            with ctx.stats.lock:
                ctx.stats.table.put(uid, path=wire.shown_name(meta.path), size=meta.size, chunks_done=0,
                                    chunks_total=meta.count, state="receiving", started=time.time(), finished=None,
                                    source=meta.source, partition=partition)
        elif not self._goes_on(msg, assembly):
            return
        elif meta.kind != "abort" and not assembly.matches(meta):  # (an abort needs only the id)
            self._reject(msg, _DISAGREES)
            return
        if meta.kind == "abort":
            self._end(assembly, "withdrawn", "the file changed or its upload was cut short")
            return
        if meta.kind == "end":
            assembly.expected_digest = meta.digest
            if assembly.complete:
                self._finish(assembly)
        else:
            self._take_chunk(msg, assembly, meta.index, value)

    def _make_folder(self, meta: wire.RecordMeta) -> None:
        """A folder of the source, which may be empty: made here too (once)."""
        ctx = self.ctx
        if ctx.finished(meta.upload_id):
            return
        where = ctx.destination(meta)
        try:
            ctx.output.make_folder(where)
        except OSError as exc:
            if classify(exc) != "upload":
                raise  # (waits, or is tried again: see _until_done)
            self._refuse_unopened(meta, describe(exc))
            return
        ctx.receipts.record(new_receipt(meta.upload_id, ctx.group_id, "published", meta.path, str(ctx.output_dir),
                                        saved_as=where))

    def _take_next_chunk(self, msg: Message, index: int, value: bytes) -> None:
        """A chunk after its upload's first, which names only its index: its upload is its key."""
        uid = (msg.key() or b"").decode("ascii", "replace")
        assembly = self.ctx.assemblies.get(uid)
        if assembly is None:
            if not self.ctx.finished(uid):
                self._reject(msg, f"chunk {index} of an upload whose first chunk was not read here "
                                  "(reading began after it, or it was refused)", quietly=uid in self.orphans)
                self.orphans[uid] = None
                if len(self.orphans) > ORPHANS_REMEMBERED:
                    self.orphans.popitem(last=False)
        elif self._goes_on(msg, assembly):
            self._take_chunk(msg, assembly, index, value)

    def _goes_on(self, msg: Message, assembly: Assembly) -> bool:
        """Whether a record of an upload being rebuilt still counts: not when the upload is
        complete, waiting for the end of the batch (a replay), nor (refused) when the record
        is in another partition than the upload, whose file another thread may hold."""
        if assembly.meta.upload_id in self.complete:
            return False
        if assembly.partition != msg.partition():
            self._reject(msg, _DISAGREES)
            return False
        return True

    def _take_chunk(self, msg: Message, assembly: Assembly, index: int, value: bytes) -> None:
        try:
            wrote = assembly.write(index, value)
        except wire.WireError as exc:
            self._reject(msg, str(exc))
            return
        assembly.newest_ms = timestamp_of(msg)
        if wrote:
            self.touched[assembly.meta.upload_id] = assembly
            self.written += len(value)
        if assembly.complete:
            self._finish(assembly)

    def _finish(self, a: Assembly) -> None:
        """A complete upload: on its way to the disk and through the digest, to be verified and
        published at the end of the batch together with the others the batch completes."""
        # An OSError on the way (disk full) leaves the assembly registered: the retried
        # record finds it complete and comes back here.
        a.flush()  # (the last run to the writer, not waited for: verified() waits for the hash)
        m = a.meta
        self.complete[m.upload_id] = (a, Staged(a.fd, a.staged, self.ctx.destination(m), m.upload_id,
                                                a.expected_digest, m.algorithm, m.size, m.source, m.mtime_ns))

    # --- the end of a batch ------------------------------------------------------------

    def _write_run(self, assembly: Assembly) -> None:
        """Hand the batch's gathered chunks of one upload to the writers, not to be held in
        memory past the batch. Not waited for: an unfinished upload pins the offset, and a
        finished one waits for its writes to be verified."""
        if self.ctx.assemblies.get(assembly.meta.upload_id) is assembly:  # (not ended meanwhile)
            assembly.flush()
            assembly.settle(wait=False)

    def _verify(self, a: Assembly, s: Staged) -> None:
        """Quarantine a completed file whose digest does not match what the uploader sent."""
        if not s.released and not a.verified():  # (waits for the batch's hashing)
            self.ctx.output.refuse(s, f"{digest.NAMES[a.meta.algorithm]} does not match what the uploader sent")

    def _settle(self, a: Assembly, s: Staged) -> None:
        """Report where a finished upload went, and record it as ended."""
        ctx = self.ctx
        uid, path, source = a.meta.upload_id, wire.shown_name(s.relpath), a.meta.source
        published = s.published
        sent_digest = f"{digest.NAMES[a.meta.algorithm]} {a.expected_digest}"
        if published is None:
            with ctx.stats.lock:
                ctx.stats.files_quarantined += 1
                ctx.stats.table.update(uid, state="quarantined", finished=time.time(), digest=sent_digest)
            where = wire.shown_name(str(s.quarantined))
            ctx.sink(events.FileQuarantined(path=path, reason=s.refused, quarantine_path=where, at=time.time()))
            self._close(a, "quarantined", saved_as=str(s.quarantined), reason=s.refused)
            return
        shown = wire.shown_name(published.path)
        with ctx.stats.lock:
            ctx.stats.files_completed += 1
            ctx.stats.table.update(uid, path=shown, state="verified", finished=time.time(), digest=sent_digest)
        ctx.sink(events.FileReconstructed(path=shown, size=a.meta.size, upload_id=uid, source=source,
                                          seconds=time.monotonic() - a.started, duplicate=published.duplicate,
                                          at=time.time()))
        kept_as = published.older_kept_as or (published.path if published.path != s.relpath else None)
        if kept_as is not None:
            ctx.sink(events.FileKeptBoth(path=path, saved_as=wire.shown_name(kept_as),
                                  older_moved=bool(published.older_kept_as), source=source,
                                  other_source=published.other_source, rewrite=published.rewrite, at=time.time()))
        self._close(a, "published", saved_as=published.path)
        if ctx.journal:
            ctx.journal.add(uid, path)

    def _end(self, a: Assembly, outcome: Outcome, reason: str) -> None:
        """End an unfinished upload without a file (refused, withdrawn or abandoned): its
        staged file goes, once the writes handed over are done."""
        ctx = self.ctx
        uid = a.meta.upload_id
        self.complete.pop(uid, None)
        self.touched.pop(uid, None)
        a.abandon()
        try:
            ctx.output.discard_staged(a.fd, a.staged)
        except OSError as exc:  # (the file stays for the next start to clean)
            ctx.sink(Notice(level="warning", message=f"removing {a.staged}: {describe(exc)}", at=time.time()))
        with ctx.stats.lock:
            if outcome != "withdrawn":
                ctx.stats.files_failed += 1
            ctx.stats.table.update(uid, state=outcome, finished=time.time())
        ctx.sink(events.UploadNotRebuilt(path=wire.shown_name(a.meta.path), upload_id=uid, outcome=outcome,
                                         reason=reason, at=time.time()))
        self._close(a, outcome, reason=reason)

    def _refuse_unopened(self, meta: wire.RecordMeta, reason: str) -> None:
        """End an upload whose staged file cannot even be made (nothing to discard)."""
        ctx = self.ctx
        with ctx.stats.lock:
            ctx.stats.files_failed += 1
        ctx.sink(events.UploadNotRebuilt(path=wire.shown_name(meta.path), upload_id=meta.upload_id, outcome="refused",
                                  reason=reason, at=time.time()))
        ctx.receipts.record(new_receipt(meta.upload_id, ctx.group_id, "refused", meta.path, str(ctx.output_dir),
                                        size=meta.size, algorithm=meta.algorithm, reason=reason))

    def _close(self, a: Assembly, outcome: Outcome, saved_as: str = "", reason: str = "") -> None:
        """Forget an ended upload: the ledger lets its offset go, the receipt says how it ended."""
        ctx = self.ctx
        uid = a.meta.upload_id
        with ctx.lock:
            ctx.assemblies.pop(uid, None)
            ctx.ledger.close(a.partition, uid)
        ctx.receipts.record(new_receipt(uid, ctx.group_id, outcome, a.meta.path, str(ctx.output_dir),
                                        size=a.meta.size, digest=a.expected_digest, algorithm=a.meta.algorithm,
                                        saved_as=saved_as, reason=reason))

    # --- reports -----------------------------------------------------------------------

    def _reject(self, msg: Message, reason: str, quietly: bool = False) -> None:
        """Count a refused record and report it (`quietly`: only count it, it was said)."""
        stats = self.ctx.stats
        with stats.lock:
            stats.records_rejected += 1
            count = stats.records_rejected
        if quietly:
            return
        if count <= REJECTS_REPORTED_ONE_BY_ONE or count % 1000 == 0:
            if count > REJECTS_REPORTED_ONE_BY_ONE:
                reason = f"{reason} ({count} records refused so far)"
            self.ctx.sink(events.RecordRejected(partition=partition_of(msg), offset=offset_of(msg), reason=reason,
                                         at=time.time()))

    def _blocked(self, exc: Exception) -> None:
        """Say once that the output folder refuses writes (disk full, permissions)."""
        ctx = self.ctx
        reason = describe(exc)
        with ctx.lock:
            first = ctx.blocked_by is None
            ctx.blocked_by = reason
        if first:
            ctx.stats.state = "blocked"
            ctx.sink(Notice(level="error", at=time.time(), message=(
                f"cannot write to {ctx.output_dir}: {reason}. Reconstruction waits and retries every "
                f"{RETRY_AFTER_S:.0f} s; nothing is skipped")))

    def _unblocked(self) -> None:
        ctx = self.ctx
        with ctx.lock:
            was, ctx.blocked_by = ctx.blocked_by, None
        if was is not None:
            ctx.stats.state = "paused" if ctx.paused.is_set() else "consuming"
            ctx.sink(Notice(level="info", message=f"{ctx.output_dir} is writable again: reconstruction resumed",
                            at=time.time()))


def _known(a: Assembly | None) -> Callable[[], Assembly | None]:
    """The upload a step of a batch works for, for _until_done."""
    return lambda: a
