"""The record format on the topic (versions 1 to 4); docs/record-format.md describes it.

Every record of one upload has the upload id as its key, so all of a file's records land in
one partition and meet in one consumer, in the order they were sent (the uploader's
producer is idempotent). Metadata travels in headers; the value is the raw chunk bytes.
After the last chunk the uploader sends an `end` record carrying the digest of the whole
file (computed while reading, so each byte is read once), or an `abort` record when the file
changed underneath and the upload is withdrawn. Versions 1 and 2 differ only in that digest:
SHA-256 in version 1, BLAKE3 in version 2. Version 3 is version 2 with lighter chunks: the
first chunk, the `end` and the `abort` record carry everything, every later chunk only its
index, which spares a header parse per chunk on both sides. Version 4 is version 3 with an
XXH3-128 digest. The version is in every record, so a reader knows from the first chunk
which digest to compute.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Literal, NamedTuple, Sequence

from msi_tui.engine.digest import DEFAULT, HEX_DIGITS, Algorithm

# Version -> (digest algorithm, header of the end record carrying it)
VERSIONS: dict[bytes, tuple[Algorithm, str]] = {
    b"1": ("sha256", "msi.sha256"),
    b"2": ("blake3", "msi.blake3"),
    b"3": ("blake3", "msi.blake3"),
    b"4": ("xxh128", "msi.xxh128"),
}
# What the uploader sends. SHA-256 stays on version 1, which readers of every version know.
_VERSION_OF: dict[str, bytes] = {"sha256": b"1", "blake3": b"3", "xxh128": b"4"}
MAGIC = b"msi-tui"
_MAGIC_HEADER = ("msi", MAGIC)
# Versions whose chunks after an upload's first carry only their index.
_LIGHT_HEADERS = frozenset(("msi.v", v) for v in (b"3", b"4"))
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
RESERVED_PREFIX = ".msi-tui-"  # the reconstructor's own folders in its output (staging, quarantine)

_KNOWN = ", ".join(v.decode() for v in VERSIONS)
Kind = Literal["chunk", "end", "abort"]
_KINDS: frozenset[str] = frozenset(("chunk", "end", "abort"))
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]+")
_DRIVE = re.compile(r"^[A-Za-z]:")

Headers = list[tuple[str, bytes]]


class WireError(ValueError):
    """A record that is not a valid msi-tui record of a version this reader knows."""


class RecordMeta(NamedTuple):
    """Everything a record says about itself except the chunk bytes. (A named tuple: one
    is made per record, and a frozen dataclass costs several times more to make.)"""

    kind: Kind
    upload_id: str
    path: str
    size: int
    chunk_size: int
    count: int
    index: int = 0
    digest: str = ""  # end records: the whole file's digest, hex
    algorithm: Algorithm = DEFAULT  # which digest the upload carries (from its format version)

    def chunk_length(self, index: int) -> int:
        """The exact byte length chunk `index` must have."""
        if index < self.count - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.count - 1)


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks needed for `size` bytes; an empty file still has one (empty) chunk."""
    return max(1, -(-size // chunk_size))


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def file_headers(upload_id: str, path: str, size: int, chunk_size: int, algorithm: Algorithm = DEFAULT) -> Headers:
    """The headers shared by every record of one upload (built once per file)."""
    return [
        _MAGIC_HEADER,
        ("msi.v", _VERSION_OF[algorithm]),
        ("msi.id", upload_id.encode()),
        ("msi.path", path.encode("utf-8")),
        ("msi.size", str(size).encode()),
        ("msi.csize", str(chunk_size).encode()),
        ("msi.count", str(chunk_count(size, chunk_size)).encode()),
    ]


def chunk_headers(common: Headers, index: int) -> Headers:
    if index and common[1] in _LIGHT_HEADERS:
        return [common[0], common[1], ("msi.index", str(index).encode())]
    return common + [("msi.kind", b"chunk"), ("msi.index", str(index).encode())]


def next_chunk_index(headers: Sequence[tuple[str, bytes | None]] | None) -> int | None:
    """The index a version-3 or -4 chunk after its upload's first carries (exactly the
    headers msi, msi.v and msi.index); None for any other record, which `decode` then reads.
    What else the chunk needs comes from the upload's first chunk, read before it."""
    if headers is None or len(headers) != 3 or headers[1] not in _LIGHT_HEADERS or headers[0] != _MAGIC_HEADER:
        return None
    name, raw = headers[2]
    if name != "msi.index":
        return None
    if raw is None or not _is_count(raw):
        raise WireError("header msi.index is not a non-negative integer")
    return int(raw)


def check_index(index: int, count: int) -> None:
    """A chunk index must fall inside its file (indexes are parsed as non-negative)."""
    if index >= count:
        raise WireError(f"chunk index {index} out of range (count {count})")


def end_headers(common: Headers, digest_hex: str) -> Headers:
    """The closing record's headers; the digest is the one `common`'s version names."""
    return common + [("msi.kind", b"end"), (VERSIONS[dict(common)["msi.v"]][1], digest_hex.encode())]


def abort_headers(common: Headers) -> Headers:
    return common + [("msi.kind", b"abort")]


def _is_count(raw: bytes) -> bool:
    """ASCII digits only, at most 20 of them: a non-negative integer of sane size."""
    return raw.isdigit() and len(raw) <= 20


def _int(fields: dict[str, bytes], name: str) -> int:
    raw = fields.get(name)
    if raw is None:
        raise WireError(f"missing header {name}")
    if not _is_count(raw):
        raise WireError(f"header {name} is not a non-negative integer")
    return int(raw)


def decode(headers: Sequence[tuple[str, bytes | None]] | None, max_size: int) -> RecordMeta:
    """Validate a record's headers and return its metadata, or raise WireError saying why.

    `max_size` bounds the declared file size, so nothing is ever sized from a hostile header.
    """
    if not headers:
        raise WireError("not an msi-tui record (no headers)")
    fields: dict[str, bytes] = {}
    for name, value in headers:
        if name in fields:
            raise WireError(f"header {name} appears twice")
        fields[name] = value or b""
    if fields.get("msi") != MAGIC:
        raise WireError("not an msi-tui record")
    version = fields.get("msi.v", b"")
    if version not in VERSIONS:
        shown = version[:16].decode("ascii", "replace")
        raise WireError(f"record format version {shown!r} is not known to this reader (knows {_KNOWN})")
    algorithm, digest_header = VERSIONS[version]
    kind = fields.get("msi.kind", b"").decode("ascii", "replace")
    if kind not in _KINDS:
        raise WireError(f"unknown record kind {kind[:16]!r}")
    upload_id = fields.get("msi.id", b"").decode("ascii", "replace")
    if not _HEX_ID.fullmatch(upload_id):
        raise WireError("bad upload id")
    path = check_relative_path(fields.get("msi.path", b""))
    size = _int(fields, "msi.size")
    chunk_size = _int(fields, "msi.csize")
    count = _int(fields, "msi.count")
    if size > max_size:
        raise WireError(f"declared size {size} is over the limit of {max_size} bytes")
    if not is_power_of_two(chunk_size):
        raise WireError(f"chunk size {chunk_size} is not a power of two")
    if count != chunk_count(size, chunk_size):
        raise WireError(f"chunk count {count} does not match size {size} / chunk size {chunk_size}")
    index, digest = 0, ""
    if kind == "chunk":
        index = _int(fields, "msi.index")
        check_index(index, count)
    elif kind == "end":
        digest = fields.get(digest_header, b"").decode("ascii", "replace")
        if len(digest) != HEX_DIGITS[algorithm] or not _HEX.fullmatch(digest):
            raise WireError(f"bad or missing {digest_header} in end record")
    return RecordMeta(kind, upload_id, path, size, chunk_size, count, index, digest, algorithm)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)  # every record of an upload repeats its path
def check_relative_path(raw: bytes) -> str:
    """Return `raw` as a safe relative POSIX path, or raise WireError.

    Refuses what could escape or surprise the output folder: absolute paths, `..`, `.`,
    empty parts, backslashes, drive letters, NUL and control characters, overlong names,
    and the reconstructor's own `.msi-tui-*` folders.
    """
    if not raw:
        raise WireError("empty path")
    if len(raw) > MAX_PATH_BYTES:
        raise WireError("path too long")
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("path is not UTF-8") from None
    if any(unicodedata.category(c) == "Cc" for c in path):
        raise WireError("path contains a control character or NUL")
    if "\\" in path:
        raise WireError("path contains a backslash")
    if path.startswith("/"):
        raise WireError("path is absolute")
    if _DRIVE.match(path):
        raise WireError("path starts with a drive letter")
    parts = path.split("/")
    if parts[0].startswith(RESERVED_PREFIX):
        raise WireError(f"path is inside the reconstructor's own folder {parts[0]!r}")
    for part in parts:
        if part in ("", ".", ".."):
            raise WireError(f"path has a forbidden part {part!r}")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise WireError("a name in the path is too long")
    return path


class Decoder:
    """`decode` with a shortcut for the common case, the next chunk of an upload just seen:
    its first eight headers equal those of an earlier, fully checked record of the upload,
    so only the index is new. Not thread safe: one per thread."""

    KNOWN = 1024  # uploads remembered

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._known: dict[bytes | None, tuple[list, RecordMeta]] = {}

    def __call__(self, headers: Sequence[tuple[str, bytes | None]] | None) -> RecordMeta:
        if headers and len(headers) == 9:
            known = self._known.get(headers[2][1])
            if known is not None and headers[:8] == known[0]:
                raw = headers[8][1]
                if raw is not None and _is_count(raw):
                    index, m = int(raw), known[1]
                    if index < m.count:
                        return RecordMeta("chunk", m.upload_id, m.path, m.size, m.chunk_size, m.count, index, "",
                                          m.algorithm)
        meta = decode(headers, self.max_size)
        if meta.kind == "chunk" and len(headers) == 9 and headers[8][0] == "msi.index":  # type: ignore[arg-type]
            if len(self._known) >= self.KNOWN:
                del self._known[next(iter(self._known))]
            self._known[headers[2][1]] = (list(headers[:8]), meta)  # type: ignore[index]
        return meta
