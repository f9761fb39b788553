"""The record format: what a reader accepts and what it refuses, with reasons."""

from __future__ import annotations

import uuid

import pytest

from msi_tui.engine import wire
from msi_tui.engine.digest import Algorithm

UID = uuid.uuid4().hex
LIMIT = 1 << 40


def headers(override: dict[str, bytes] | None = None, path: str = "a/b.trc", size: int = 40000,
            chunk: int = 16384) -> wire.Headers:
    base = dict(wire.chunk_headers(wire.file_headers(UID, path, size, chunk), 0))  # (the first: all headers)
    base["msi.index"] = b"1"
    base.update(override or {})
    return list(base.items())


def test_a_chunk_record_decodes() -> None:
    meta = wire.decode(headers(), LIMIT)
    assert (meta.kind, meta.path, meta.size, meta.chunk_size, meta.count, meta.index) == (
        "chunk", "a/b.trc", 40000, 16384, 3, 1)
    assert [meta.chunk_length(i) for i in range(3)] == [16384, 16384, 40000 - 2 * 16384]


@pytest.mark.parametrize(("algorithm", "digits"), [("xxh128", 32), ("sha256", 64)])
def test_chunks_after_the_first_carry_only_their_index(algorithm: Algorithm, digits: int) -> None:
    common = wire.file_headers(UID, "a/b.trc", 40000, 16384, algorithm)
    first, second = wire.chunk_headers(common, 0), wire.chunk_headers(common, 2)
    end = wire.end_headers(common, "a" * digits)
    assert second == [("msi", b"msi-tui"), ("msi.v", b"5"), ("msi.index", b"2")]
    assert wire.next_chunk_index(second) == 2
    # The first chunk and the closing record say everything, and are no "next chunk".
    assert wire.decode(first, LIMIT)[:6] == ("chunk", UID, "a/b.trc", 40000, 16384, 3)
    assert wire.decode(end, LIMIT).digest == "a" * digits
    assert [wire.next_chunk_index(h) for h in (first, end, None, [])] == [None] * 4
    # Nor is a record of another version shaped the same.
    assert wire.next_chunk_index([("msi", b"msi-tui"), ("msi.v", b"4"), ("msi.index", b"2")]) is None
    assert wire.next_chunk_index([("msi", b"other"), ("msi.v", b"5"), ("msi.index", b"2")]) is None
    for raw in (b"-1", b"x", b"", None, b"1" * 21):
        with pytest.raises(wire.WireError, match=r"msi\.index is not a non-negative integer"):
            wire.next_chunk_index([("msi", b"msi-tui"), ("msi.v", b"5"), ("msi.index", raw)])


def test_an_empty_file_has_one_empty_chunk() -> None:
    assert wire.chunk_count(0, 16384) == 1
    meta = wire.decode(list(dict(wire.chunk_headers(wire.file_headers(UID, "e", 0, 16384), 0)).items()), LIMIT)
    assert meta.chunk_length(0) == 0


@pytest.mark.parametrize(("algorithm", "digits"), [("xxh128", 32), ("sha256", 64)])
def test_the_first_chunk_names_the_digest_the_end_record_carries(algorithm: Algorithm, digits: int) -> None:
    common = wire.file_headers(UID, "x", 5, 16384, algorithm)
    assert dict(common)["msi.algo"] == algorithm.encode()
    end = wire.end_headers(common, "ab" * (digits // 2))
    assert dict(end)["msi.digest"] == b"ab" * (digits // 2)
    meta = wire.decode(end, LIMIT)
    assert (meta.digest, meta.algorithm) == ("ab" * (digits // 2), algorithm)
    assert wire.decode(wire.chunk_headers(common, 0), LIMIT).algorithm == algorithm  # known from the first chunk
    # A digest of another algorithm's length is refused, and so is an algorithm not known.
    wrong_length = [(name, value + b"ab" if name == "msi.digest" else value) for name, value in end]
    with pytest.raises(wire.WireError, match=r"bad or missing msi\.digest"):
        wire.decode(wrong_length, LIMIT)
    unknown = [(name, b"md5" if name == "msi.algo" else value) for name, value in end]
    with pytest.raises(wire.WireError, match=r"msi\.algo names no digest"):
        wire.decode(unknown, LIMIT)


def test_the_source_and_modification_time_travel_with_the_first_chunk() -> None:
    common = wire.file_headers(UID, "run/a.trc", 5, 16384, "xxh128", "scope-2", 1_700_000_000_123_456_789)
    meta = wire.decode(wire.chunk_headers(common, 0), LIMIT)
    assert (meta.source, meta.mtime_ns) == ("scope-2", 1_700_000_000_123_456_789)
    folder = wire.decode(wire.dir_headers(UID, "run/empty", "scope-2", 5), LIMIT)
    assert (folder.kind, folder.path, folder.source, folder.mtime_ns) == ("dir", "run/empty", "scope-2", 5)
    for bad in ("a/b", "..", "", "x" * 65, "tab\there"):
        with pytest.raises(wire.WireError):
            wire.check_source(bad)


@pytest.mark.parametrize(
    ("hdrs", "reason"),
    [
        (None, "no headers"),
        ([("foo", b"bar")], "not an msi-tui record"),
        (headers({"msi.v": b"4"}), "version '4' is not known to this reader .knows 5."),
        (headers({"msi.mtime": b"x"}), "msi.mtime is not a non-negative integer"),
        (headers({"msi.source": b"\xff"}), "msi.source is not UTF-8"),
        (headers({"msi.kind": b"weird"}), "unknown record kind"),
        (headers({"msi.id": b"../../x"}), "bad upload id"),
        (headers({"msi.index": b"3"}), "out of range"),
        (headers({"msi.index": b"-1"}), "not a non-negative integer"),
        (headers({"msi.count": b"7"}), "does not match"),
        (headers({"msi.csize": b"1000"}), "power of two"),
        (headers({"msi.size": b"99999999999999"}), "over the limit"),
        (headers({"msi.size": b"1" * 30}), "not a non-negative integer"),
        ([*headers(), ("msi", b"msi-tui")], "appears twice"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(hdrs: wire.Headers | None, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(hdrs, 10**12)


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../up", "a/../../b", "a/./b", "a//b", "", "C:/x", "c:evil", "a\\b", "nul\x00byte",
     "tab\tname", "x/" + "n" * 300, "trailing/"],
)
def test_hostile_paths_are_refused(path: str) -> None:
    with pytest.raises(wire.WireError):
        wire.check_relative_path(path.encode())


@pytest.mark.parametrize("path", ["a.trc", "sub dir/ñandú.dat", "日本/ファイル.txt", "..hidden-ish", "a..b"])
def test_ordinary_paths_pass(path: str) -> None:
    assert wire.check_relative_path(path.encode()) == path


def test_a_path_that_is_not_utf8_keeps_its_bytes() -> None:
    path = wire.check_relative_path(b"caf\xe9/\xff.trc")
    assert wire.path_bytes(path) == b"caf\xe9/\xff.trc"
    assert wire.shown_name(path) == "caf\\xe9/\\xff.trc"
