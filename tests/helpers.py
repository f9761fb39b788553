"""Shared test helpers: running the CLI, waiting on conditions, building file trees."""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

from msi_tui.engine import wire
from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import new_hasher
from msi_tui.engine.events import Event

DEFAULT_TIMEOUT = 120.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEFAULT_TIMEOUT, every: float = 0.1):
    """Poll `condition` until it returns something truthy; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def new_topic() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


def cli(*args: str, timeout: float = 180, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m msi_tui ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "msi_tui", *args],
        capture_output=True, text=True, timeout=timeout, input=stdin if stdin is not None else "",
    )


class Background:
    """A `python -m msi_tui ...` process we talk to through its standard input."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "msi_tui", *args],
            stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def quit(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.type("quit")
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self._log.close()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()


def digest_of(data: bytes, algorithm: str = DEFAULT_DIGEST) -> str:
    """The digest an end record of `algorithm`'s format version carries for `data`."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def tree(root: Path, hidden: bool = True) -> dict[str, str]:
    """Every file under root as relative path -> SHA-256 (files that vanish meanwhile are
    left out: the reconstructor removes staged files while we look; so is the lock a running
    reconstructor holds in its staging folder)."""
    result = {}
    for dirpath, dirs, files in os.walk(root):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(".lock") and Path(dirpath).name == ".msi-tui-staging":
                continue
            path = Path(dirpath) / name
            try:
                result[path.relative_to(root).as_posix()] = digest(path)
            except FileNotFoundError:
                continue
    return result


def staged_parts(out: Path) -> list[Path]:
    """The staged (partial) files in an output folder."""
    staging = out / ".msi-tui-staging"
    return sorted(staging.glob("*.part")) if staging.is_dir() else []


def visible(out: Path) -> list[str]:
    """Names in `out` besides the reconstructor's staging folder, which must hold no staged file."""
    assert staged_parts(out) == []
    return sorted(p.name for p in out.iterdir() if p.name != ".msi-tui-staging")


def write_random(path: Path, size: int, seed: int = 0) -> None:
    """A file of `size` pseudo-random bytes, written in 1 MiB blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * (1 << 15)  # 1 MiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
        if size:
            f.seek(0)
            f.write(os.urandom(min(size, 64)))  # so equal sizes still differ


def make_sample_tree(root: Path, chunk_size: int = 16384, big: int = 100_000_000) -> None:
    """At least 50 files: edge sizes, a large file, spaces and non-ASCII names, subfolders."""
    sizes = [0, 1, chunk_size - 1, chunk_size, chunk_size + 1, 2 * chunk_size, 3 * chunk_size + 7, big]
    for i, size in enumerate(sizes):
        write_random(root / f"edge_{i}_{size}.bin", size, seed=i)
    names = ["with space.trc", "ñandú.dat", "日本語のファイル.txt", "Übergröße (1).csv", "a'quote\".txt"]
    for i, name in enumerate(names):
        write_random(root / "names" / name, 1000 + i, seed=100 + i)
    for i in range(40):
        write_random(root / f"level1_{i % 3}" / f"deeper {i % 2}" / f"scope_{i:03}.trc", 5000 + 997 * i, seed=200 + i)


class Recorder:
    """An engine sink that keeps every event, for tests to inspect."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: type) -> list:
        with self.lock:
            return [e for e in self.events if isinstance(e, kind)]

    def paths(self, kind: type) -> list[str]:
        return [e.path for e in self.of(kind)]


def upload_records(data: bytes, path: str, chunk: int, algorithm: str = DEFAULT_DIGEST, uid: str | None = None,
                   partition: int = 0, digest: str | None = None, first_offset: int = 0) -> list[FakeMessage]:
    """One upload's records as the uploader sends them, offsets from `first_offset`
    (`digest`: the one the end record claims, when not the data's own)."""
    uid = uid or uuid.uuid4().hex
    common = wire.file_headers(uid, path, len(data), chunk, algorithm)  # type: ignore[arg-type]
    count = wire.chunk_count(len(data), chunk)
    msgs = [FakeMessage(data[i * chunk:(i + 1) * chunk], wire.chunk_headers(common, i), first_offset + i, uid,
                        partition) for i in range(count)]
    end = wire.end_headers(common, digest or digest_of(data, algorithm))
    return [*msgs, FakeMessage(b"", end, first_offset + count, uid, partition)]


def send_file(producer, topic: str, path: str, data: bytes, chunk: int = 16384, digest: str | None = None) -> str:  # noqa: ANN001
    """Produce one file's records in our format straight from a Producer; returns its upload id."""
    uid = uuid.uuid4().hex
    for msg in upload_records(data, path, chunk, uid=uid, digest=digest):
        producer.produce(topic, msg.value(), uid, headers=msg.headers())
    return uid


def own(service, partition: int = 0, generation: int = 1, committed: int | None = None) -> None:  # noqa: ANN001
    """Make a Reconstructor act as if the group had just assigned it `partition`."""
    service.ctx.owned[partition] = generation
    service.ctx.ledger.assign(partition, committed)


def prepared_reconstructor(out: Path, **settings: object):  # noqa: ANN201
    """A Reconstructor that was not started, owning partition 0, its events in `.recorder`."""
    from msi_tui.engine.config import ClusterConfig
    from msi_tui.engine.reconstruct import ReconstructSettings, Reconstructor

    recorder = Recorder()
    service = Reconstructor(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                            ReconstructSettings(output_dir=out, **settings), recorder)  # type: ignore[arg-type]
    service.recorder = recorder  # type: ignore[attr-defined]  # (the service keeps a guarded sink)
    service.output.prepare()
    own(service, 0, 1)
    return service


@contextmanager
def reconstructing(bootstrap: str, topic: str, out: Path, **settings: object) -> Iterator[Recorder]:
    """An in-process reconstructor (one thread, group g-TOPIC) running while the block runs;
    yields the recorder of its events."""
    from msi_tui.engine.config import load_config
    from msi_tui.engine.reconstruct import ReconstructSettings, Reconstructor

    events = Recorder()
    service = Reconstructor(load_config(bootstrap=bootstrap),
                            ReconstructSettings(output_dir=out, topic=topic, n_threads=1, group_id=f"g-{topic}",
                                                partitions=1, **settings), events)  # type: ignore[arg-type]
    service.start()
    try:
        yield events
    finally:
        service.request_stop()
        assert service.wait_stopped(60)


def new_rebuilder(service):  # noqa: ANN001, ANN201
    """A rebuilding thread's worker for a Reconstructor that was not started."""
    from msi_tui.engine.assembly import DiskWriter
    from msi_tui.engine.rebuild import Rebuilder

    return Rebuilder(service.ctx, wire.decoder(service.settings.max_file_size), DiskWriter("test-write"))


class FakeMessage:
    """Just what the reconstructor reads from a confluent_kafka Message."""

    def __init__(self, value: bytes | None, headers, offset: int, key: bytes | str | None = None,  # noqa: ANN001
                 partition: int = 0, timestamp_ms: int = 0) -> None:
        self._value, self._headers, self._offset, self._partition = value, headers, offset, partition
        self._key = key.encode() if isinstance(key, str) else key
        self._timestamp = timestamp_ms

    def timestamp(self) -> tuple[int, int]:
        return (2, self._timestamp)  # (TIMESTAMP_LOG_APPEND_TIME, ms)

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self):  # noqa: ANN201
        return self._headers

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


def pages_in_memory(path: Path, start: int = 0, end: int | None = None) -> int:
    """How many pages of the file's bytes [start, end) are in the page cache (mincore on
    an untouched mapping)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        # Private and writable only so ctypes can take its address; no page is touched.
        m = mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.c_char.from_buffer(m)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        vec = (ctypes.c_ubyte * (-(-size // mmap.PAGESIZE)))()
        assert libc.mincore(ctypes.c_void_p(ctypes.addressof(base)), ctypes.c_size_t(size), vec) == 0
        page = mmap.PAGESIZE
        return sum(v & 1 for v in vec[start // page:None if end is None else -(-end // page)])
    finally:
        del base
        m.close()
