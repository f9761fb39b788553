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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message, Producer

from msi_tui.engine import wire
from msi_tui.engine.config import ClusterConfig, load_config
from msi_tui.engine.digest import DEFAULT as DEFAULT_DIGEST
from msi_tui.engine.digest import Algorithm, new_hasher
from msi_tui.engine.disk_writer import DiskWriter
from msi_tui.engine.events import Event, Sink
from msi_tui.engine.rebuild import Rebuilder
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from msi_tui.engine.upload import Uploader
from msi_tui.engine.upload_settings import UploadSettings

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


SESSION_TOPICS: list[str] = []  # made by this session: deleted at its end from a standing broker


def new_topic() -> str:
    name = f"test_{uuid.uuid4().hex[:12]}"
    SESSION_TOPICS.append(name)
    return name


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
        with open(log, "w") as out:  # (the process writes to its own copy)
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-m", "msi_tui", *args],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
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
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


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


def upload_records(data: bytes, path: str, chunk: int, algorithm: Algorithm = DEFAULT_DIGEST,
                   uid: str | None = None, partition: int = 0, digest: str | None = None, first_offset: int = 0,
                   timestamp_ms: int = 0) -> list[Message]:
    """One upload's records as the uploader sends them, offsets from `first_offset`
    (`digest`: the one the end record claims, when not the data's own; `timestamp_ms`: their
    append time)."""
    uid = uid or uuid.uuid4().hex
    common = wire.file_headers(uid, path, len(data), chunk, algorithm)
    count = wire.chunk_count(len(data), chunk)
    msgs = [consumed(data[i * chunk:(i + 1) * chunk], wire.chunk_headers(common, i), first_offset + i, uid,
                     partition, timestamp_ms) for i in range(count)]
    end = wire.end_headers(common, digest or digest_of(data, algorithm))
    return [*msgs, consumed(b"", end, first_offset + count, uid, partition, timestamp_ms)]


def send_file(producer: Producer, topic: str, path: str, data: bytes, chunk: int = 16384,
              digest: str | None = None) -> str:
    """Produce one file's records in our format straight from a Producer; returns its upload id."""
    uid = uuid.uuid4().hex
    for msg in upload_records(data, path, chunk, uid=uid, digest=digest):
        producer.produce(topic, msg.value(), uid, headers=msg.headers())
    return uid


def own(service: Reconstructor, partition: int = 0, generation: int = 1, committed: int | None = None) -> None:
    """Make a Reconstructor act as if the group had just assigned it `partition`."""
    service.ctx.owned[partition] = generation
    service.ctx.ledger.assign(partition, committed)


class PreparedReconstructor(Reconstructor):
    """A Reconstructor that was not started, owning partition 0, its events in `recorder`
    (the service itself keeps a guarded sink)."""

    def __init__(self, out: Path, **settings: Any) -> None:
        self.recorder = Recorder()
        super().__init__(ClusterConfig("t", "t", {"bootstrap.servers": "127.0.0.1:1"}),
                         ReconstructSettings(output_dir=out, **settings), self.recorder)
        self.output.prepare()
        own(self, 0, 1)


def prepared_reconstructor(out: Path, **settings: Any) -> PreparedReconstructor:
    return PreparedReconstructor(out, **settings)


@contextmanager
def reconstructing(bootstrap: str, topic: str, out: Path, **settings: Any) -> Iterator[Recorder]:
    """An in-process reconstructor (one thread, group g-TOPIC) running while the block runs;
    yields the recorder of its events."""
    events = Recorder()
    service = Reconstructor(load_config(bootstrap=bootstrap),
                            ReconstructSettings(output_dir=out, topic=topic, n_threads=1, group_id=f"g-{topic}",
                                                partitions=1, **settings), events)
    service.start()
    try:
        yield events
    finally:
        service.request_stop()
        assert service.wait_stopped(60)


def start_uploader(bootstrap: str, topic: str, sink: Sink, folder: Path | None = None, **settings: Any) -> Uploader:
    """An in-process Uploader started on `topic` (watching `folder` when given), its events in
    `sink`. One partition unless told, as the topics the tests make have (an existing topic's
    own count wins anyway)."""
    settings.setdefault("partitions", 1)
    uploader = Uploader(load_config(bootstrap=bootstrap), UploadSettings(topic=topic, folder=folder, **settings), sink)
    uploader.start()
    return uploader


def stop_uploader(uploader: Uploader) -> None:
    """Stop as the operator's `quit` does (drain, then stop); it must be stopped within 60 s."""
    uploader.request_stop()
    assert uploader.wait_stopped(60)


def new_rebuilder(service: Reconstructor) -> Rebuilder:
    """A rebuilding thread's worker for a Reconstructor that was not started."""
    return Rebuilder(service.ctx, wire.decoder(service.settings.max_file_size), DiskWriter("test-write"))


def consumed(value: bytes | None, headers: wire.ReadHeaders | None, offset: int, key: bytes | str | None = None,
             partition: int = 0, timestamp_ms: int = 0) -> Message:
    """A record as a consumer returns it (its timestamp the broker's append time, in ms)."""
    listed: list[tuple[str, str | bytes | None]] | None = None if headers is None else [*headers]
    return Message(topic="t", partition=partition, offset=offset,
                   key=key.encode() if isinstance(key, str) else key, value=value, headers=listed,
                   timestamp=(TIMESTAMP_LOG_APPEND_TIME, timestamp_ms))


def upload_id_of(msg: Message) -> str:
    """The upload id a record's key carries."""
    key = msg.key()
    assert key is not None
    return key.decode()


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
