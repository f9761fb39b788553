"""Generated hostile records fed straight into the reconstructor's record handling.

Whatever the headers and bytes, the reconstructor never raises, never writes outside the
output folder and never publishes a file whose digest was not verified.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import discard
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from tests.helpers import consumed, digest_of, new_rebuilder, own, upload_records, visible

IDS = [uuid.uuid4().hex for _ in range(3)]
paths = st.one_of(
    st.sampled_from(["a.bin", "d/e.bin", "../x", "/etc/x", "a/../../y", "C:/z", "a\\b", "n\x00ul", "./q", "a//b",
                     "link/inside.bin", "." * 3, "é/ü.dat", "x" * 300]),
    st.text(min_size=0, max_size=40),
)
numbers = st.one_of(st.integers(min_value=0, max_value=70_000), st.sampled_from([2**40, 2**63, 10**30]))
header_values = {
    "msi": st.sampled_from([b"msi-tui", b"msi-tui", b"other"]),
    "msi.v": st.sampled_from([b"5", b"5", b"5", b"5", b"4", b"", b"05"]),
    "msi.kind": st.sampled_from([b"chunk", b"chunk", b"end", b"abort", b"dir", b"zzz"]),
    "msi.id": st.sampled_from([i.encode() for i in IDS] + [b"../../etc", b""]),
    "msi.path": paths.map(lambda p: p.encode("utf-8", "surrogatepass")),
    "msi.size": numbers.map(lambda n: str(n).encode()),
    "msi.csize": st.sampled_from([b"1024", b"1024", b"1000", b"0", b"-4", b"16384"]),
    "msi.count": numbers.map(lambda n: str(n).encode()),
    "msi.index": st.one_of(numbers.map(lambda n: str(n).encode()), st.just(b"x")),
    "msi.algo": st.sampled_from([b"xxh128", b"xxh128", b"sha256", b"blake3", b""]),
    "msi.digest": st.sampled_from([b"0" * 32, digest_of(b"", "xxh128").encode(), b"0" * 64,
                                   hashlib.sha256(b"").hexdigest().encode(), b"nothex"]),
    "msi.source": st.sampled_from([b"scope-1", b"", b"a/b", b"..", b"\xff", b"x" * 100, b"tab\t"]),
    "msi.mtime": st.sampled_from([b"0", b"1700000000000000000", b"-1", b"x"]),
}
keys = st.sampled_from([i.encode() for i in IDS] + [b"../../etc", b"", None])
# A chunk after an upload's first: three headers, the upload named by the key.
next_chunk_headers = st.tuples(st.sampled_from([b"msi-tui", b"other"]), st.sampled_from([b"5", b"5", b"4"]),
                               header_values["msi.index"]).map(
    lambda t: [("msi", t[0]), ("msi.v", t[1]), ("msi.index", t[2])])
records = st.lists(
    st.tuples(
        st.one_of(st.fixed_dictionaries({}, optional=header_values).map(lambda d: list(d.items())),
                  next_chunk_headers),
        st.binary(max_size=3000),
        keys,
        st.sampled_from([0, 0, 0, 1]),
    ),
    min_size=1,
    max_size=8,
)


def test_generated_hostile_records_never_escape_the_output_folder(tmp_path: Path) -> None:
    root = tmp_path / "jail"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    out = root / "out"
    out.mkdir()
    (out / "link").symlink_to(outside)
    cases = 0

    @settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(batch=records)
    def feed(batch) -> None:
        nonlocal cases
        cases += 1
        service = Reconstructor(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                                ReconstructSettings(output_dir=out, max_file_size=1 << 20), discard)
        service.output.prepare()
        own(service, 0, 1)
        worker = new_rebuilder(service)
        # (A record claiming partition 1 is one that names an upload of another partition.)
        messages = [consumed(value, headers, offset, key, partition)
                    for offset, (headers, value, key, partition) in enumerate(batch)]
        worker.apply(0, 1, messages)
        for assembly in list(service.ctx.assemblies.values()):
            service.ctx.hand_over(assembly)
        worker.close()
        service.output.close()

    feed()
    assert cases >= 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jail", "outside"]
    assert [p.name for p in root.iterdir()] == ["out"]
    assert list(outside.iterdir()) == []
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            path = Path(dirpath) / name
            assert path.resolve().is_relative_to(out.resolve()), path


def test_crafted_valid_file_is_published_by_the_same_path(tmp_path: Path) -> None:
    """The generated test above would pass vacuously if _apply ignored everything."""
    out = tmp_path / "out"
    out.mkdir()
    service = Reconstructor(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                            ReconstructSettings(output_dir=out), discard)
    own(service, 0, 1)
    worker = new_rebuilder(service)
    data = os.urandom(5000)
    worker.apply(0, 1, upload_records(data, "d/ok.bin", 1024))
    worker.apply(0, 1, upload_records(data, "d/ok-sha.bin", 1024, "sha256", first_offset=100))
    assert (out / "d" / "ok.bin").read_bytes() == data
    assert (out / "d" / "ok-sha.bin").read_bytes() == data
    assert visible(out) == ["d"]


SIZE, CHUNK = 5000, 1024  # five chunks, the last one 904 bytes
hostile_chunks = st.lists(
    st.tuples(
        st.one_of(st.integers(min_value=0, max_value=12).map(
            lambda i: [("msi", b"msi-tui"), ("msi.v", b"5"), ("msi.index", str(i).encode())]), next_chunk_headers),
        st.sampled_from([0, SIZE - 4 * CHUNK, CHUNK, 3000]).map(lambda n: os.urandom(n)),
        st.integers(min_value=1, max_value=6),  # where in the upload it arrives (after chunk 0)
    ),
    min_size=1,
    max_size=4,
)


def test_hostile_chunks_inside_an_upload_never_change_the_published_file(tmp_path: Path) -> None:
    """Chunks naming a real upload (its key) with any index, length or header: the file is
    published byte for byte as sent, or not at all."""
    data = os.urandom(SIZE)
    published = 0

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(hostile=hostile_chunks)
    def feed(hostile) -> None:
        nonlocal published
        out = tmp_path / uuid.uuid4().hex
        service = Reconstructor(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                                ReconstructSettings(output_dir=out), discard)
        service.output.prepare()
        own(service, 0, 1)
        worker = new_rebuilder(service)
        msgs = upload_records(data, "f.bin", CHUNK)
        uid = msgs[0].key()
        for headers, value, at in sorted(hostile, key=lambda h: -h[2]):
            msgs.insert(at, consumed(value, headers, 0, uid))
        worker.apply(0, 1, msgs)
        worker.close()
        if (out / "f.bin").exists():
            assert (out / "f.bin").read_bytes() == data
            published += 1

    feed()
    assert published >= 50  # not vacuous: most hostile chunks are refused and the file arrives
