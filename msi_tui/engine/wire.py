"""The record format on the topic (version 5, the one version); docs/record-format.md
describes it.

Every record of one upload has the upload id as its key, so all of a file's records land in
one partition and meet in one consumer, in the order they were sent (the uploader's
producer is idempotent). Metadata travels in headers; the value is the raw chunk bytes. The
first chunk, the `end` and the `abort` record carry every fact of the file (its path's bytes
as they are, a name need not be UTF-8; its size, chunk size, digest algorithm, source and
modification time); every later chunk only its index, which spares a header parse per
chunk on both sides. After the last chunk the uploader sends an `end` record carrying the
digest of the whole file (computed while reading, so each byte is read once), or an `abort`
record when the upload is withdrawn. A `dir` record names a folder of the source, which may
be empty.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, get_args

from msi_tui.engine.digest import ALGORITHMS, DEFAULT, HEX_DIGITS, Algorithm

VERSION = b"5"
MAGIC = b"msi-tui"
_MAGIC_HEADER = ("msi", MAGIC)
_VERSION_HEADER = ("msi.v", VERSION)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
RESERVED_PREFIX = ".msi-tui-"  # the reconstructor's own folders in its output (staging, quarantine)

Kind = Literal["chunk", "end", "abort", "dir"]
_KINDS: dict[bytes, Kind] = {k.encode(): k for k in get_args(Kind)}
_ALGORITHMS: dict[bytes, Algorithm] = {a.encode(): a for a in ALGORITHMS}
MAX_SOURCE_BYTES = 64
_HEX_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]+")
_DRIVE = re.compile(r"^[A-Za-z]:")

Headers = list[tuple[str, bytes]]  # as produced
ReadHeaders = Sequence[tuple[str, bytes | None]]  # as read (a header's value may be null)


class WireError(ValueError):
    """A record that is not a valid msi-tui record of the version this reader knows."""


class RecordMeta(NamedTuple):
    """Everything a record says about itself except the chunk bytes. (A named tuple: one
    is made per record, and a frozen dataclass costs several times more to make.)"""

    kind: Kind
    upload_id: str
    path: str
    size: int
    chunk_size: int
    # (count and index hide the tuple methods of those names, which nothing calls on a RecordMeta)
    count: int  # type: ignore[assignment]
    index: int = 0  # type: ignore[assignment]
    digest: str = ""  # end records: the whole file's digest, hex
    algorithm: Algorithm = DEFAULT  # which digest the upload carries
    source: str = ""  # the uploader's source name (version 5; "" before)
    mtime_ns: int = 0  # the file's modification time at its source (version 5; 0: unknown)

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


def path_bytes(path: str) -> bytes:
    """A path as its file system bytes: a name that is not UTF-8 is held by Python with
    surrogate escapes, which give back the very bytes."""
    return path.encode("utf-8", "surrogateescape")


def file_headers(upload_id: str, path: str, size: int, chunk_size: int, algorithm: Algorithm = DEFAULT,
                 source: str = "", mtime_ns: int = 0) -> Headers:
    """The headers shared by every record of one upload (built once per file)."""
    return [
        _MAGIC_HEADER,
        _VERSION_HEADER,
        ("msi.id", upload_id.encode()),
        ("msi.path", path_bytes(path)),
        ("msi.size", str(size).encode()),
        ("msi.csize", str(chunk_size).encode()),
        ("msi.count", str(chunk_count(size, chunk_size)).encode()),
        ("msi.algo", algorithm.encode()),
        ("msi.source", source.encode()),
        ("msi.mtime", str(mtime_ns).encode()),
    ]


def dir_headers(upload_id: str, path: str, source: str, mtime_ns: int) -> Headers:
    """A `dir` record: the folder `path` exists at the source (it may be empty)."""
    return [*file_headers(upload_id, path, 0, 1, DEFAULT, source, mtime_ns), ("msi.kind", b"dir")]


def check_source(source: str) -> str:
    """A source name is one folder name of at most MAX_SOURCE_BYTES (it may become one, see
    --by-source); returns it, or raises WireError saying why not."""
    raw = source.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > MAX_SOURCE_BYTES:
        raise WireError(f"a source name has 1 to {MAX_SOURCE_BYTES} bytes")
    if "/" in source or source in (".", "..") or source.startswith(RESERVED_PREFIX):
        raise WireError("a source name is one folder name (no '/', not '.' or '..')")
    check_relative_path(raw)
    return source


def chunk_headers(common: Headers, index: int) -> Headers:
    if index:
        return [_MAGIC_HEADER, _VERSION_HEADER, ("msi.index", str(index).encode())]
    return [*common, ("msi.kind", b"chunk"), ("msi.index", str(index).encode())]


def next_chunk_index(headers: ReadHeaders | None) -> int | None:
    """The index a chunk after its upload's first carries (exactly the headers msi, msi.v and
    msi.index); None for any other record, which `decode` then reads. What else the chunk
    needs comes from the upload's first chunk, read before it."""
    if headers is None or len(headers) != 3 or headers[1] != _VERSION_HEADER or headers[0] != _MAGIC_HEADER:
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
    """The closing record's headers; the digest is of the algorithm `common` names."""
    return [*common, ("msi.kind", b"end"), ("msi.digest", digest_hex.encode())]


def abort_headers(common: Headers) -> Headers:
    return [*common, ("msi.kind", b"abort")]


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


def decoder(max_size: int) -> Callable[[ReadHeaders | None], RecordMeta]:
    """`decode` with the size limit given."""
    return functools.partial(decode, max_size=max_size)


def decode(headers: ReadHeaders | None, max_size: int) -> RecordMeta:
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
    if version != VERSION:
        shown = version[:16].decode("ascii", "replace")
        raise WireError(f"record format version {shown!r} is not known to this reader (knows {VERSION.decode()})")
    algorithm = _ALGORITHMS.get(fields.get("msi.algo", b""))
    if algorithm is None:
        raise WireError("header msi.algo names no digest this reader knows")
    try:
        source = fields.get("msi.source", b"").decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("header msi.source is not UTF-8") from None
    if len(source) > MAX_SOURCE_BYTES or any(unicodedata.category(c) == "Cc" for c in source):
        raise WireError("header msi.source is too long or has a control character")
    mtime_ns = _int(fields, "msi.mtime")
    raw_kind = fields.get("msi.kind", b"")
    kind = _KINDS.get(raw_kind)
    if kind is None:
        raise WireError(f"unknown record kind {raw_kind.decode('ascii', 'replace')[:16]!r}")
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
        digest = fields.get("msi.digest", b"").decode("ascii", "replace")
        if len(digest) != HEX_DIGITS[algorithm] or not _HEX.fullmatch(digest):
            raise WireError("bad or missing msi.digest in end record")
    return RecordMeta(kind, upload_id, path, size, chunk_size, count, index, digest, algorithm, source, mtime_ns)


@functools.lru_cache(maxsize=4096)  # every record of an upload repeats its path
def check_relative_path(raw: bytes) -> str:
    """Return `raw` as a safe relative POSIX path, or raise WireError.

    Refuses what could escape or surprise the output folder: absolute paths, `..`, `.`,
    empty parts, backslashes, drive letters, NUL and control characters, overlong names,
    and the reconstructor's own `.msi-tui-*` folders. Bytes that are not UTF-8 are kept as
    surrogate escapes: written to a Linux file system, the name has the sender's bytes.
    """
    if not raw:
        raise WireError("empty path")
    if len(raw) > MAX_PATH_BYTES:
        raise WireError("path too long")
    path = raw.decode("utf-8", "surrogateescape")
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
        if len(path_bytes(part)) > MAX_NAME_BYTES:
            raise WireError("a name in the path is too long")
    return path


def shown_name(relpath: str) -> str:
    """`relpath` fit for one line of a message: bytes of a name that is not UTF-8 (which
    Python holds as surrogate escapes, and no terminal or log can print) as `\\xNN`, control
    characters escaped."""
    try:
        raw = relpath.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to: show it as a code point
        raw = relpath.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)
