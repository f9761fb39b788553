"""One upload being rebuilt: chunks written at their offset, hashed as they line up.

Memory stays bounded whatever the file size: chunk bytes go straight to the staged file,
and what was received is a contiguous prefix count plus the (normally empty) set of chunks
that arrived ahead of it. Chunks of one upload arrive in order within their partition, so
the SHA-256 is computed as they come and verification needs no second read.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from msi_tui.engine.wire import RecordMeta, WireError


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
    hashed: int = 0
    expected_sha256: str = ""
    started: float = field(default_factory=time.monotonic)
    _digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def matches(self, meta: RecordMeta) -> bool:
        """A later record must describe the same file as the first one did."""
        m = self.meta
        return (m.path, m.size, m.chunk_size, m.count) == (meta.path, meta.size, meta.chunk_size, meta.count)

    def has(self, index: int) -> bool:
        return index < self.contiguous or index in self.ahead

    def write(self, index: int, data: bytes) -> bool:
        """Store one chunk; False when it was already here (a harmless replay)."""
        if self.has(index):
            return False
        expected = self.meta.chunk_length(index)
        if len(data) != expected:
            raise WireError(f"chunk {index} has {len(data)} bytes, expected {expected}")
        offset = index * self.meta.chunk_size
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written
        if index == self.contiguous:
            self.contiguous += 1
            while self.contiguous in self.ahead:
                self.ahead.discard(self.contiguous)
                self.contiguous += 1
        else:
            self.ahead.add(index)
        self._hash_prefix(data if index == self.hashed else None)
        return True

    def _hash_prefix(self, just_written: bytes | None) -> None:
        if just_written is not None:
            self._digest.update(just_written)
            self.hashed += 1
        while self.hashed < self.contiguous:  # chunks that had arrived early: read them back
            length = self.meta.chunk_length(self.hashed)
            self._digest.update(os.pread(self.fd, length, self.hashed * self.meta.chunk_size))
            self.hashed += 1

    @property
    def complete(self) -> bool:
        return self.contiguous == self.meta.count and bool(self.expected_sha256)

    def verified(self) -> bool:
        """True when the staged bytes hash to the digest the uploader sent."""
        return self._digest.hexdigest() == self.expected_sha256
