"""Per-partition bookkeeping that decides which offset the reconstructor may commit.

Pure: no Kafka client, no threads, no files. The reconstructor calls it under one lock, and
nothing else decides an offset. The rules (docs/architecture.md explains them):

- Reading a partition resumes at its committed offset (`assign`). A record before the
  position already accounted for is a stale replay and is not applied again (`fresh`).
- A record is *accounted* once it was applied or deliberately refused (`accounted`); the
  partition's position moves past it only then.
- An upload is *open* from its first record until it ends: published, quarantined,
  refused, withdrawn or abandoned (`close`). An open upload pins the safe offset to its
  first record, so a restart or a new owner replays it from the start.
- safe offset = min(position, first record of every open upload).
- Abandoned uploads end: an open upload whose newest record is older than the partition's
  newest accounted record by `abandon_after_ms` (record timestamps, not the wall clock, so
  a replay of the same records decides the same) is reported by `abandoned`, and the
  caller ends it. A partition that receives nothing does not move, and neither does this
  clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Open:
    first_offset: int
    newest_ms: int  # timestamp of its newest record


@dataclass
class _Partition:
    position: int | None  # next offset to account for; None until known (no committed offset)
    clock_ms: int = 0  # newest timestamp of an accounted record
    halted: bool = False  # an error of ours: nothing more is applied or accounted here
    uploads: dict[str, _Open] = field(default_factory=dict)


class Ledger:
    """Per partition: the position, the open uploads with their first offset, the clock."""

    def __init__(self, abandon_after_ms: int) -> None:
        self.abandon_after_ms = abandon_after_ms
        self._partitions: dict[int, _Partition] = {}

    # --- ownership ---------------------------------------------------------------------

    def assign(self, partition: int, committed: int | None) -> None:
        """Start (again) owning a partition, reading from `committed` (None: unknown, the
        first record read sets it). Whatever was kept of an earlier ownership is dropped."""
        self._partitions[partition] = _Partition(committed if committed is not None and committed >= 0 else None)

    def revoke(self, partition: int) -> list[str]:
        """Stop owning a partition; returns its open uploads, which the caller discards."""
        gone = self._partitions.pop(partition, None)
        return list(gone.uploads) if gone else []

    def owns(self, partition: int) -> bool:
        return partition in self._partitions

    # --- records -----------------------------------------------------------------------

    def fresh(self, partition: int, offset: int) -> bool:
        """Whether a record still needs applying: owned, and not before the position."""
        p = self._partitions.get(partition)
        return p is not None and not p.halted and (p.position is None or offset >= p.position)

    def open(self, partition: int, upload_id: str, offset: int, timestamp_ms: int) -> None:
        """An upload's first record, at `offset`, is being applied: it pins the offset."""
        p = self._partitions[partition]
        if upload_id not in p.uploads:
            p.uploads[upload_id] = _Open(offset, timestamp_ms)

    def touch(self, partition: int, upload_id: str, timestamp_ms: int) -> None:
        """A later record of an open upload was applied."""
        upload = self._partitions[partition].uploads.get(upload_id)
        if upload is not None and timestamp_ms > upload.newest_ms:
            upload.newest_ms = timestamp_ms

    def is_open(self, partition: int, upload_id: str) -> bool:
        p = self._partitions.get(partition)
        return p is not None and upload_id in p.uploads

    def close(self, partition: int, upload_id: str) -> None:
        """The upload ended (published, quarantined, refused, withdrawn or abandoned)."""
        p = self._partitions.get(partition)
        if p is not None:
            p.uploads.pop(upload_id, None)

    def accounted(self, partition: int, offset: int, timestamp_ms: int) -> None:
        """Every record up to `offset` was applied or deliberately refused."""
        p = self._partitions.get(partition)
        if p is None or p.halted:
            return
        if p.position is None or offset + 1 > p.position:
            p.position = offset + 1
        if timestamp_ms > p.clock_ms:
            p.clock_ms = timestamp_ms

    def halt(self, partition: int) -> None:
        """Applying a batch failed in a way no step caught: the position stays where it is
        (before that batch) until the partition is assigned again, so it is read again."""
        p = self._partitions.get(partition)
        if p is not None:
            p.halted = True

    # --- decisions ---------------------------------------------------------------------

    def abandoned(self, partition: int) -> list[str]:
        """Open uploads silent for `abandon_after_ms` while the partition moved on."""
        p = self._partitions.get(partition)
        if p is None:
            return []
        limit = p.clock_ms - self.abandon_after_ms
        return [uid for uid, u in p.uploads.items() if u.newest_ms < limit]

    def position(self, partition: int) -> int | None:
        """The next offset to account for (where reading resumes); None when unknown."""
        p = self._partitions.get(partition)
        return p.position if p is not None else None

    def safe_offset(self, partition: int) -> int | None:
        """The offset to commit: a restart from it loses no record that was neither applied
        nor refused, and no open upload. None when nothing is known yet."""
        p = self._partitions.get(partition)
        if p is None or p.position is None:
            return None
        return min([p.position, *(u.first_offset for u in p.uploads.values())])

    def open_count(self) -> int:
        return sum(len(p.uploads) for p in self._partitions.values())
