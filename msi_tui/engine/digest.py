"""The whole-file digests an upload can carry (wire.VERSIONS gives each its record format).

The digest guards against what goes wrong by accident between the file on the acquisition PC
and its copy (a lost or doubled chunk, a bug, a bad disk): it travels on the same topic as
the data, so whoever may write to the topic may also write a matching digest, and a
cryptographic hash buys nothing that the cluster's own access control does not (see
docs/record-format.md). Hence XXH3-128 by default (format 4): 128 bits, and on one core of
the benchmark machine 34 GiB/s in 16 KiB updates from cache (12 GB/s from memory) against
BLAKE3's 3.2-3.6 GiB/s (format 3) and SHA-256's 1.1 GiB/s (format 1); every byte is hashed
once on each side. BLAKE3 and SHA-256 stay for operators who check files by hand with
`b3sum` or `sha256sum` (`xxhsum -H2` prints XXH3-128), and SHA-256 for readers that only
know format 1.
"""

from __future__ import annotations

import hashlib
from typing import Literal, Protocol

import blake3
import xxhash

Algorithm = Literal["xxh128", "blake3", "sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("xxh128", "blake3", "sha256")
DEFAULT: Algorithm = "xxh128"
NAMES: dict[str, str] = {"xxh128": "XXH3-128", "blake3": "BLAKE3", "sha256": "SHA-256"}  # as operators read them
HEX_DIGITS: dict[str, int] = {"xxh128": 32, "blake3": 64, "sha256": 64}  # of each one's hexdigest()


class Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher; each kind lets go of the GIL while it hashes large buffers."""
    if algorithm == "xxh128":
        return xxhash.xxh3_128()
    return blake3.blake3() if algorithm == "blake3" else hashlib.sha256()


def keeps_gil_for_small_updates(hasher: Hasher) -> bool:
    """XXH3 keeps the GIL for inputs up to 64 KiB, which it hashes in less time than it
    takes to join them into one; BLAKE3 and SHA-256 let go of it at every update."""
    return isinstance(hasher, xxhash.xxh3_128)
