#!/usr/bin/env python3
"""Side-by-side benchmarks: msi-tui, a bare confluent-kafka client (the ceiling), OpenMSIStream.

Everything runs in one process tree, on one broker, in one run, so the ratios compare like
with like. Every program under test runs as its own subprocess (startup included in its
time) while its /proc status is sampled for peak RSS (helpers from roundtrip_memory.py).
Before the first measurement a consumer group joins and 512 MiB go through a throwaway
topic, so the broker's start-up costs (offsets topic, JIT) land on no tool.

    python bench/compare.py                         # the issue's sizes (long: ~1 h on 2 cores)
    python bench/compare.py --size-mib 256 --files 200 --big-gib 1
    python bench/compare.py --only upload,reconstruct --chunks 16384
    python bench/compare.py --skip-oms --bootstrap 127.0.0.1:9092

Parts (--only): upload, reconstruct (needs upload: it reads what the uploads produced),
e2e, latency, memory.
  upload       msi-tui `upload-file` (one file) / `upload DIR --headless` (many files) vs a
               bare Producer reading the same file(s) in the same chunk size with msi-tui's
               producer_settings (acks=all, idempotence) vs OpenMSIStream UploadDataFile /
               DataFileUploadDirectory --upload_existing.
  reconstruct  msi-tui `reconstruct --headless` vs a bare Consumer (msi-tui's
               consumer_settings, consume(500) batches, values discarded) reading the same
               msi-tui records vs the same bare Consumer writing each record to its upload's
               file (the least a reconstructor must do with the bytes: one write each, no
               fsync, no digest, no checks) vs OpenMSIStream DataFileDownloadDirectory
               reading what its own uploader produced. A last line gives the disk's own
               time for the large file's bytes (1 MiB writes, fsync), Kafka aside.
  e2e          uploader watching an empty folder + reconstructor running, then the many
               files are copied in: first copy started -> last file verified/reconstructed.
  latency      --latency-files (50) files of 1,000 bytes written one every --latency-gap s into
               a watched folder; per file, from its close to its arrival in the output (the
               reconstructor's 'reconstructed' line, printed once the file is published under
               its name); p50/p95. msi-tui runs once per --latency-settles value (its default
               settle window, 0.5 s, and --settle-seconds 0). Then the --after-verified move
               round trip: one file per --move-sizes size, from its close to its 'verified'
               line at the uploader and to its move out of the watched folder.
  memory       one --big-gib file at 16 KiB chunks: peak RSS of each side of each tool.

Seconds are wall time from spawning the program to the fact (its exit for upload-file and
UploadDataFile, its line for the last file otherwise), so startup and group joining count.
MB/s is 10^6 bytes per second. Each cell is the best of --repeat runs (default 3) for
msi-tui and the bare clients, whose runs take seconds and vary by a third from one to the
next on a small shared machine; they take turns at going first. OpenMSIStream's runs take
minutes, so it runs --repeat-oms times (default 1), after the others.

OpenMSIStream is installed from PyPI into bench/.venv-openmsistream (created on first use)
and driven through its console scripts with a generated config file; if it cannot be made
to run, the reason is printed and the other comparisons go on.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from roundtrip_memory import GIB, MB, MIB, Child, MemSampler, sha256_of, write_random_file  # noqa: E402

from msi_tui.formatting import plural  # noqa: E402

OMS_VENV = BENCH / ".venv-openmsistream"
OMS_PACKAGE = "openmsistream"
MSI = "msi-tui"
BARE = "bare"
BARE_WRITE = "bare+write"
OMS = "openmsistream"
RECONSTRUCT_LINE = "reconstructed "
OMS_DONE_LINE = "successfully reconstructed from stream"
BROKER_TMPFS_GIB = 16  # room for the memory part's 4 GiB topics, one per tool, and a run's inputs
OMS_PRODUCED_LINE = "has been fully produced to the"


# --- children ---------------------------------------------------------------------------


class QuietChild(Child):
    """A Child whose output is kept, not echoed (only warnings, errors and tracebacks are)."""

    def _pump(self, stream: IO[str], tag: str) -> None:
        loud = ("ERROR", "WARNING", "Traceback", "Error", "error:")
        for raw in stream:
            line = tag + raw.rstrip("\n")
            now = time.monotonic()
            self.lines.append((now, line))
            if any(word in line for word in loud) and "DEBUG" not in line:
                print(f"  [{self.name} +{now - self.started:.1f}s] {line[:300]}", flush=True)

    def count(self, needle: str) -> int:
        return sum(1 for _, line in list(self.lines) if needle in line)

    def wait_lines(self, needle: str, n: int, timeout: float) -> float | None:
        """Monotonic time of the n-th line containing `needle`; None on timeout or early exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        checked = 0
        while True:
            lines = self.lines
            while checked < len(lines):
                t, line = lines[checked]
                checked += 1
                if needle in line:
                    seen += 1
                    if seen >= n:
                        return t
            if time.monotonic() >= deadline or not self.alive():
                # a child that exited may still have lines in flight: one more look
                if checked == len(self.lines):
                    return None
                continue
            time.sleep(0.02)

    def quit(self, timeout: float = 60.0) -> None:
        stdin = self.proc.stdin  # (None: started without one)
        if self.alive() and stdin is not None:
            try:
                stdin.write("quit\n")
                stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            if not self.wait(timeout):
                self.kill()

    def tail(self, n: int = 8) -> str:
        return " | ".join(line for _, line in list(self.lines)[-n:])


@dataclass
class Result:
    seconds: float | None = None
    peak_mb: float | None = None
    cpu_s: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.seconds is not None


class Bench:
    def __init__(self, args: argparse.Namespace, run_dir: Path, bootstrap: str) -> None:
        self.args = args
        self.run_dir = run_dir
        self.bootstrap = bootstrap
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("CI", None)
        self.children: list[QuietChild] = []
        self.topics: list[str] = []
        self.oms_python: Path | None = None
        self.oms_version = "-"
        self.oms_error = ""
        self.oms_config = run_dir / "oms.config"
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    # --- plumbing -----------------------------------------------------------------------

    def fresh(self, label: str) -> tuple[str, str, dict]:
        """A new topic (created with 5 partitions), group id and msi-tui state dir."""
        from confluent_kafka.admin import NewTopic

        rid = uuid.uuid4().hex[:8]
        topic, group = f"cmp-{label}-{rid}", f"cmp-{label}-{rid}"
        self.admin.create_topics([NewTopic(topic, num_partitions=5)])[topic].result(30)
        self.topics.append(topic)
        state = self.run_dir / "state" / rid
        state.mkdir(parents=True)
        return topic, group, {**self.env, "MSI_TUI_STATE_DIR": str(state)}

    def drop_topics(self) -> None:
        """Delete the topics made so far, so the broker's disk does not fill up."""
        if self.topics:
            for fut in self.admin.delete_topics(self.topics, operation_timeout=30).values():
                try:
                    fut.result(60)
                except Exception:
                    pass
            self.topics = []

    def spawn(self, name: str, cmd: Sequence[object], env: dict[str, str] | None = None,
              stdin: bool = False) -> QuietChild:
        # Every run starts with no dirty pages: otherwise the previous run's broker log
        # writeback lands on whoever writes to disk next (the reconstructors, never bare).
        os.sync()
        child = QuietChild.spawn(name, [str(c) for c in cmd], env or self.env,
                                 subprocess.PIPE if stdin else subprocess.DEVNULL)
        self.children.append(child)
        return child

    def discard(self, *paths: Path) -> None:
        """Put a run's files aside, deleted with the run directory at the end: ext4 skips
        inodes freed in the last seconds when it allocates new ones, and 1,000 files deleted
        just before a run made the next reconstructor's file creation cost ~17 % of its CPU
        (perf: recently_deleted, find_inode_bit), a cost the bare consumer never pays."""
        trash = self.run_dir / "trash"
        trash.mkdir(exist_ok=True)
        for path in paths:
            if path.exists():
                path.rename(trash / uuid.uuid4().hex)

    @staticmethod
    def result_of(child: QuietChild, seconds: float | None, note: str = "") -> Result:
        if child.alive():
            child.quit()
        return Result(seconds, child.peak_mb, child.cpu_seconds, note)

    def msi(self, *args: object) -> list[object]:
        return [sys.executable, "-m", "msi_tui", *args]

    def me(self, *args: object) -> list[object]:
        return [sys.executable, str(Path(__file__).resolve()), *args]

    def oms(self, program: str, *args: object) -> list[object]:
        assert self.oms_python is not None
        logs = self.run_dir / "oms-logs"
        logs.mkdir(exist_ok=True)
        return [self.oms_python.parent / program, *args, "--config", self.oms_config,
                "--logger_file_path", logs / f"{program}-{uuid.uuid4().hex[:6]}.log"]

    # --- OpenMSIStream ------------------------------------------------------------------

    def setup_oms(self) -> None:
        py = OMS_VENV / "bin" / "python"
        step = ""
        try:
            if not py.exists():
                step = f"{sys.executable} -m venv {OMS_VENV}"
                print(f"creating {OMS_VENV} and installing {OMS_PACKAGE} from PyPI", flush=True)
                subprocess.run([sys.executable, "-m", "venv", str(OMS_VENV)], check=True,
                               capture_output=True, text=True, timeout=300)
            probe = [str(py), "-c", "import importlib.metadata as m, openmsistream; print(m.version('openmsistream'))"]
            done = subprocess.run(probe, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                step = f"{py} -m pip install {OMS_PACKAGE}"
                subprocess.run([str(py), "-m", "pip", "install", "-q", OMS_PACKAGE], check=True,
                               capture_output=True, text=True, timeout=1200)
                step = " ".join(probe[:2]) + " 'import openmsistream'"
                done = subprocess.run(probe, capture_output=True, text=True, timeout=300, check=True)
            self.oms_version = done.stdout.strip()
            self.oms_python = py
        except subprocess.CalledProcessError as exc:
            err = (exc.stderr or exc.stdout or "").strip().splitlines()
            self.oms_error = f"`{step}` failed: {err[-1] if err else exc}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.oms_error = f"`{step}` failed: {exc}"
        if self.oms_error:
            print(f"OpenMSIStream unavailable: {self.oms_error}", flush=True)
            return
        # The shipped local_broker_test.config, with our broker (and compression, see --oms-compression).
        self.oms_config.write_text(
            "[broker]\n"
            f"bootstrap.servers = {self.bootstrap}\n\n"
            "[producer]\n"
            "batch.size       = 2000000\n"
            "linger.ms        = 100\n"
            f"compression.type = {self.args.oms_compression}\n"
            "key.serializer   = StringSerializer\n"
            "value.serializer = DataFileChunkSerializer\n\n"
            "[consumer]\n"
            "group.id           = create_new\n"
            "auto.offset.reset  = earliest\n"
            "enable.auto.commit = False\n"
            "fetch.min.bytes    = 100000\n"
            "key.deserializer   = StringDeserializer\n"
            "value.deserializer = DataFileChunkDeserializer\n"
        )

    @property
    def with_oms(self) -> bool:
        return self.oms_python is not None

    # --- the runs -----------------------------------------------------------------------

    def link_copy(self, src_dir: Path, name: str) -> Path:
        """A private folder of hard links to the many files (each uploader gets its own)."""
        dst = self.run_dir / "links" / f"{name}-{uuid.uuid4().hex[:6]}"
        dst.mkdir(parents=True)
        for f in sorted(src_dir.iterdir()):
            os.link(f, dst / f.name)
        return dst

    def upload_msi(self, src: Path, many: int, cs: int) -> tuple[Result, str]:
        topic, _group, env = self.fresh(f"msi-up-{cs}")
        t = self.args.timeout
        if not many:
            child = self.spawn("msi upload-file", self.msi("upload-file", src, "--bootstrap", self.bootstrap,
                                                           "--topic", topic, "--chunk-size", cs), env)
            ok = child.wait(t) and child.proc.returncode == 0
            return self.result_of(child, child.seconds if ok else None, "" if ok else child.tail()), topic
        folder = self.link_copy(src, "msi")
        child = self.spawn("msi upload", self.msi("upload", folder, "--headless", "--bootstrap", self.bootstrap,
                                                  "--topic", topic, "--chunk-size", cs, "--update-seconds", "-1"),
                           env, stdin=True)
        last = child.wait_lines("uploaded ", many, t)
        return self.result_of(child, last - child.started if last else None, "" if last else child.tail()), topic

    def upload_bare(self, src: Path, many: int, cs: int) -> tuple[Result, str]:
        topic, _group, env = self.fresh(f"bare-up-{cs}")
        child = self.spawn("bare producer", self.me("_bare-produce", self.bootstrap, topic, cs, src), env)
        ok = child.wait(self.args.timeout) and child.proc.returncode == 0
        return self.result_of(child, child.seconds if ok else None, "" if ok else child.tail()), topic

    def upload_oms(self, src: Path, many: int, cs: int) -> tuple[Result, str]:
        topic, _group, env = self.fresh(f"oms-up-{cs}")
        t = self.args.timeout_oms
        if not many:
            child = self.spawn("oms UploadDataFile", self.oms("UploadDataFile", src, "--topic_name", topic,
                                                              "--chunk_size", cs), env)
            ok = child.wait(t) and child.proc.returncode == 0
            return self.result_of(child, child.seconds if ok else None, "" if ok else child.tail()), topic
        folder = self.link_copy(src, "oms")
        child = self.spawn("oms DataFileUploadDirectory",
                           self.oms("DataFileUploadDirectory", folder, "--topic_name", topic, "--chunk_size", cs,
                                    "--upload_existing", "--logger_stream_level", "debug",
                                    "--update_seconds", "100000"),
                           env, stdin=True)
        last = child.wait_lines(OMS_PRODUCED_LINE, many, t)
        return self.result_of(child, last - child.started if last else None, "" if last else child.tail()), topic

    def reconstruct_msi(self, topic: str, files: int) -> Result:
        _t, group, env = self.fresh("msi-rc")
        out = self.run_dir / "out" / f"msi-{group}"
        child = self.spawn("msi reconstruct", self.msi("reconstruct", out, "--headless", "--bootstrap", self.bootstrap,
                                                       "--topic", topic, "--group-id", group, "--update-seconds", "-1"),
                           env, stdin=True)
        last = child.wait_lines(RECONSTRUCT_LINE, files, self.args.timeout)
        res = self.result_of(child, last - child.started if last else None, "" if last else child.tail())
        self.discard(out)
        return res

    def reconstruct_bare(self, topic: str, write: bool = False) -> Result:
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe"})
        parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
        records = sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
        probe.close()
        _t, group, env = self.fresh("bare-rc")
        out = self.run_dir / "out" / f"bare-{group}"
        child = self.spawn("bare consumer", self.me("_bare-consume", self.bootstrap, topic, group, records,
                                                    *([out] if write else [])), env)
        ok = child.wait(self.args.timeout) and child.proc.returncode == 0
        self.discard(out)
        return self.result_of(child, child.seconds if ok else None, "" if ok else child.tail())

    def reconstruct_oms(self, topic: str, files: int) -> Result:
        out = self.run_dir / "out" / f"oms-{uuid.uuid4().hex[:6]}"
        child = self.spawn("oms DataFileDownloadDirectory",
                           self.oms("DataFileDownloadDirectory", out, "--topic_name", topic,
                                    "--logger_stream_level", "debug", "--update_seconds", "100000"),
                           stdin=True)
        last = child.wait_lines(OMS_DONE_LINE, files, self.args.timeout_oms)
        res = self.result_of(child, last - child.started if last else None, "" if last else child.tail())
        self.discard(out)
        return res

    # --- e2e and latency: a watcher and a reconstructor running together ------------------

    def pair(self, tool: str, cs: int, tag: str,
             upload_args: tuple[object, ...] = ()) -> tuple[QuietChild, QuietChild, Path, Path]:
        """Start (uploader watching an empty folder, reconstructor); return once both are ready.
        `upload_args`: more options for msi-tui's uploader (the latency part's)."""
        topic, group, env = self.fresh(f"{tool}-{tag}")
        watched = self.run_dir / "watched" / f"{tool}-{group}"
        out = self.run_dir / "out" / f"{tool}-{group}"
        watched.mkdir(parents=True)
        if tool == MSI:
            rc = self.spawn("msi reconstruct", self.msi("reconstruct", out, "--headless", "--bootstrap", self.bootstrap,
                                                        "--topic", topic, "--group-id", group,
                                                        "--update-seconds", "-1"),
                            env, stdin=True)
            up = self.spawn("msi upload", self.msi("upload", watched, "--headless", "--bootstrap", self.bootstrap,
                                                   "--topic", topic, "--chunk-size", cs, "--update-seconds", "-1",
                                                   *upload_args),
                            env, stdin=True)
            ready = [(rc, "reconstructing files"), (up, "watching ")]
        else:
            rc = self.spawn("oms DataFileDownloadDirectory",
                            self.oms("DataFileDownloadDirectory", out, "--topic_name", topic,
                                     "--logger_stream_level", "debug", "--update_seconds", "100000"), stdin=True)
            up = self.spawn("oms DataFileUploadDirectory",
                            self.oms("DataFileUploadDirectory", watched, "--topic_name", topic, "--chunk_size", cs,
                                     "--update_seconds", "100000"), stdin=True)
            ready = [(rc, "Listening for files"), (up, "Listening for files")]
        for child, needle in ready:
            if child.wait_lines(needle, 1, 120) is None:
                print(f"  ({child.name} did not say {needle!r}: {child.tail()})", flush=True)
        time.sleep(self.args.settle)  # consumer group assignment after the ready line
        return up, rc, watched, out

    def e2e(self, tool: str, src_dir: Path, cs: int) -> Result:
        files = sorted(src_dir.iterdir())
        up, rc, watched, out = self.pair(tool, cs, f"e2e-{cs}")
        t0 = time.monotonic()
        for f in files:
            shutil.copyfile(f, watched / f.name)
        copied = time.monotonic() - t0
        needle = RECONSTRUCT_LINE if tool == MSI else OMS_DONE_LINE
        timeout = self.args.timeout if tool == MSI else self.args.timeout_oms
        last = rc.wait_lines(needle, len(files), timeout)
        res = Result(last - t0 if last else None, None, None,
                     "" if last else f"{rc.count(needle)}/{len(files)} arrived")
        up.quit()
        rc.quit()
        res.peak_mb = max(up.peak_mb, rc.peak_mb)
        res.extra = {"copy_s": copied, "up_peak": up.peak_mb, "rc_peak": rc.peak_mb}
        self.discard(watched, out)
        return res

    def latency(self, tool: str, cs: int, settle: str | None = None) -> Result:
        """Per file, from its close (the end of the `with` block) to the reconstructor's line.
        `settle`: msi-tui's --settle-seconds (None: its default)."""
        n, gap = self.args.latency_files, self.args.latency_gap
        extra = ("--settle-seconds", settle) if tool == MSI and settle is not None else ()
        up, rc, watched, out = self.pair(tool, cs, "lat", extra)
        dropped: dict[str, float] = {}
        for i in range(n):
            name = f"small-{i:03d}.bin"
            with open(watched / name, "wb") as f:
                f.write(os.urandom(1000))
            dropped[name] = time.monotonic()  # closed
            time.sleep(gap)
        needle = RECONSTRUCT_LINE if tool == MSI else OMS_DONE_LINE
        rc.wait_lines(needle, n, 60 + 10 * n)
        lat: list[float] = []
        for t, line in list(rc.lines):
            if needle in line:
                for name, t_drop in dropped.items():
                    if name in line:
                        lat.append(t - t_drop)
                        break
        up.quit()
        rc.quit()
        self.discard(watched, out)
        if not lat:
            return Result(None, note=f"no file arrived: {rc.tail()}")
        lat.sort()
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return Result(statistics.median(lat), max(up.peak_mb, rc.peak_mb), None,
                      "" if len(lat) == n else f"{len(lat)}/{n} arrived",
                      {"p95": p95, "n": len(lat), "max": lat[-1]})

    def after_verified_move(self, cs: int, size: int) -> Result:
        """`upload --after-verified move DIR`: one file of `size` bytes written into the watched
        folder; from its close to the uploader's 'uploaded' and 'verified' lines, and to its
        move under DIR (the uploader's 'moved to' line, then checked on disk: gone from the
        source, the same bytes under DIR). The move waits until the file has been unchanged
        for a minute (CLEANUP_MIN_AGE_S in msi_tui/engine/followup.py)."""
        moved_to = self.run_dir / "moved" / uuid.uuid4().hex[:8]
        up, rc, watched, out = self.pair(MSI, cs, "move", ("--after-verified", "move", moved_to))
        name = f"round-trip-{size}.bin"
        since = len(up.lines)
        if size >= MIB:
            digest = write_random_file(watched / name, size)
        else:
            data = os.urandom(size)
            with open(watched / name, "wb") as fh:
                fh.write(data)
            digest = hashlib.sha256(data).hexdigest()
        closed = time.monotonic()
        times: dict[str, float | None] = {}
        for key, needle in (("uploaded", f"uploaded {name} ("), ("verified", f"verified {name} at "),
                            ("moved", f"{name}: verified, moved to ")):
            deadline = closed + self.args.timeout
            t = None
            while t is None and time.monotonic() < deadline and up.alive():
                t = next((t for t, line in list(up.lines)[since:] if needle in line), None)
                if t is None:
                    time.sleep(0.05)
            times[key] = None if t is None else t - closed
        note = ""
        target = moved_to / name
        if times["moved"] is None:
            note = f"not moved: {up.tail(4)}"
        elif (watched / name).exists() or not target.exists() or sha256_of(target) != digest:
            note = "moved, but the source is still there or the moved file differs"
        up.quit()
        rc.quit()
        self.discard(watched, out, moved_to)
        return Result(times["moved"], max(up.peak_mb, rc.peak_mb), None, note, times)


# --- the bare clients (run as subprocesses of this script) --------------------------------


def _config(bootstrap: str):
    from msi_tui.engine.config import ClusterConfig

    return ClusterConfig("bench", "bench", {"bootstrap.servers": bootstrap})


def bare_produce(bootstrap: str, topic: str, cs: int, src: str) -> int:
    """Read each file once, chunk by chunk, and produce the raw bytes: the upload ceiling."""
    from confluent_kafka import Producer

    from msi_tui.engine.kafka_clients import producer_settings

    conf = producer_settings(_config(bootstrap), cs, 3000)
    conf.pop("logger", None)
    producer = Producer(conf)
    errors = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            errors.append(err)

    path = Path(src)
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for f in files:
        key = uuid.uuid4().hex.encode()
        with open(f, "rb") as fh:
            while data := fh.read(cs):
                while True:
                    try:
                        producer.produce(topic, data, key, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
    producer.flush(-1)
    if errors:
        print(f"{len(errors)} delivery errors, first: {errors[0]}", file=sys.stderr)
        return 1
    print("delivered", flush=True)
    return 0


def warm_up_broker(bootstrap: str, mib: int = 512) -> None:
    """Send `mib` MiB through a throwaway topic and read it back in a throwaway group. A fresh
    broker creates its offsets topic on the first group, and its JVM runs the produce and
    fetch paths interpreted until the JIT has seen them: neither wait may land on whichever
    tool is measured first (msi-tui, in every cell)."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-warm-up-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=5)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1 << 20})
    sent = 0
    for i in range(mib * 2):  # half in 16 KiB records, half in 512 KiB ones
        size = 16384 if i % 2 else 524288
        for _ in range((512 << 10) // size):
            while True:
                try:
                    producer.produce(topic, os.urandom(16) * (size // 16), str(sent % 50).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
    producer.flush(120)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + 120
    while seen < sent and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(500, 0.5) if m.error() is None)
    consumer.close()
    admin.delete_topics([topic], operation_timeout=30)[topic].result(60)


def bare_consume(bootstrap: str, topic: str, group: str, records: int, out: str | None = None) -> int:
    """Read `records` records in consume() batches and discard them: the reconstruct ceiling.
    With `out`, append each record's bytes to a file named by its key instead (msi-tui keys
    every record by its upload, whose records a partition keeps in order) and close the
    file at the upload's empty closing record: the bytes reach files, nothing more."""
    from confluent_kafka import Consumer

    from msi_tui.engine.kafka_clients import consumer_settings, take_records

    conf = consumer_settings(_config(bootstrap), group)
    conf.pop("logger", None)
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    files: dict[bytes, int] = {}
    if out is not None:
        os.makedirs(out)
    seen = 0
    nbytes = 0
    while seen < records:
        for msg in take_records(consumer, 500, 0.2):  # (as msi-tui reads)
            if msg.error() is None:
                seen += 1
                value = msg.value() or b""
                nbytes += len(value)
                if out is None:
                    continue
                key = msg.key() or b""
                fd = files.get(key)
                if fd is None:
                    fd = files[key] = os.open(os.path.join(out, key.hex()[:64] or "unkeyed"),
                                              os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                if value:
                    os.write(fd, value)
                else:
                    os.close(files.pop(key))
    for fd in files.values():
        os.close(fd)
    consumer.close()
    print(f"read {seen} records, {nbytes} bytes", flush=True)
    return 0


# --- tables -------------------------------------------------------------------------------


def mbps(nbytes: int, r: Result | None) -> float | None:
    return nbytes / MB / r.seconds if r is not None and r.seconds else None


def f(v: float | None, spec: str = "8.1f") -> str:
    width = int(spec.split(".")[0] or 0) if spec[0].isdigit() else 0
    return format(v, spec) if v is not None else "-".rjust(width)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}x" if a and b else "     - "


def best(results: list[Result]) -> Result:
    ok = [r for r in results if r.ok]
    if not ok:
        return results[-1]
    top = min(ok, key=lambda r: r.seconds or 0.0)  # (an ok result has its seconds)
    top.peak_mb = max(r.peak_mb or 0 for r in ok) or None
    return top


def print_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = [f"## {title}", "  ".join(h.ljust(w) if i < 3 else h.rjust(w)
                                    for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=False))))
    text = "\n".join(out)
    print("\n" + text, flush=True)
    return out


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--bootstrap", help="an existing broker (default: a LocalBroker with a 1024 MB heap)")
    p.add_argument("--size-mib", type=int, default=1024, help="the one large file, MiB (default %(default)s)")
    p.add_argument("--files", type=int, default=1000, help="number of small files (default %(default)s)")
    p.add_argument("--file-mib", type=float, default=1.0, help="size of each small file, MiB (default %(default)s)")
    p.add_argument("--big-gib", type=float, default=4.0, help="the memory run's file, GiB (default %(default)s)")
    p.add_argument("--chunks", default="16384,524288", help="chunk sizes (default %(default)s)")
    p.add_argument("--only", default="upload,reconstruct,e2e,latency,memory", help="parts to run (default: all)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per cell of msi-tui and the bare clients, the best is shown (default %(default)s)")
    p.add_argument("--repeat-oms", type=int, default=1, help="runs per cell of OpenMSIStream (default %(default)s)")
    p.add_argument("--latency-files", type=int, default=50)
    p.add_argument("--latency-gap", type=float, default=0.5, help="seconds between small files (default %(default)s)")
    p.add_argument("--latency-settles", default="default,0",
                   help="msi-tui's --settle-seconds values for the latency part, 'default' for its own "
                        "(default %(default)s)")
    p.add_argument("--move-sizes", default="1000,100000000",
                   help="file sizes (bytes) of the --after-verified move round trip, empty to skip it "
                        "(default %(default)s)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the ready lines before dropping files")
    p.add_argument("--skip-oms", action="store_true", help="leave OpenMSIStream out")
    p.add_argument("--oms-compression", default="none",
                   help="OpenMSIStream's compression.type (its shipped config says lz4; default: none, like msi-tui)")
    p.add_argument("--timeout", type=float, default=1800.0, help="per msi-tui/bare run, s")
    p.add_argument("--timeout-oms", type=float, default=3600.0, help="per OpenMSIStream run, s")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--broker-dir", type=Path, default=None,
                   help="where the LocalBroker keeps its log (default: a folder in /dev/shm when it has "
                        f"{BROKER_TMPFS_GIB} GiB free, else in the work directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only.split(","))
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="msi-compare-", dir=args.workdir))
    broker = None
    broker_sampler = None
    report: list[str] = []
    bench: Bench | None = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            from msi_tui.broker.local import LocalBroker, free_port

            port = free_port()
            cport = free_port()
            while cport == port:
                cport = free_port()
            own_home = args.broker_dir is None
            broker_home = args.broker_dir or broker_home_default(run_dir)
            # A deleted topic's files go a second after it, not a minute (Kafka's default):
            # at 1 GiB a run, a minute of runs filled this machine's memory (tmpfs) or disk.
            broker = LocalBroker(broker_home, port=port, controller_port=cport, heap_mb=1024,
                                 extra_properties={"log.segment.delete.delay.ms": "1000"})
            bootstrap = broker.start()
            pid = broker._live_pid()
            if pid:
                broker_sampler = MemSampler(pid, 1.0)
                broker_sampler.start()
        bench = Bench(args, run_dir, bootstrap)
        _byte_compile_msi_tui()
        # In a child: the memory it takes would otherwise count in every later child's peak
        # RSS (Linux carries the forking parent's high-water mark through exec into ru_maxrss).
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_warm-up", bootstrap], check=True)
        if not args.skip_oms:
            bench.setup_oms()
        tools = [MSI, BARE] + ([OMS] if bench.with_oms else [])

        def runs_of(tool: str) -> int:
            return args.repeat_oms if tool == OMS else args.repeat

        def in_turn(names: list[str], rep: int) -> list[str]:
            """The tools of run `rep`, msi-tui and the bare clients taking turns at going
            first: a run right after another one is measurably faster or slower here."""
            quick = [t for t in names if t != OMS]
            k = rep % len(quick)
            order = quick[k:] + quick[:k] + [t for t in names if t == OMS]
            return [t for t in order if rep < runs_of(t)]

        rc_tools = [MSI, BARE, BARE_WRITE] + ([OMS] if bench.with_oms else [])
        import confluent_kafka

        where = f" (log in {broker.home})" if broker is not None else ""
        head = (f"compare: broker {bootstrap}{where}; msi-tui {_msi_version()}; "
                f"confluent-kafka {confluent_kafka.__version__} / librdkafka {confluent_kafka.libversion()[0]}; "
                f"openmsistream {bench.oms_version}"
                f"{'' if bench.with_oms else ' (NOT RUN: ' + (bench.oms_error or '--skip-oms') + ')'}")
        print(head, flush=True)
        report.append(head)

        big = run_dir / "large.bin"
        many_dir = run_dir / "many"
        large_bytes = args.size_mib * MIB
        file_bytes = int(args.file_mib * MIB)
        many_bytes = file_bytes * args.files
        if parts & {"upload", "reconstruct", "e2e"}:
            t = time.monotonic()
            if parts & {"upload", "reconstruct"}:
                write_random_file(big, large_bytes)
            many_dir.mkdir()
            for i in range(args.files):
                with open(many_dir / f"file-{i:05d}.bin", "wb") as fh:
                    fh.write(os.urandom(file_bytes))
            print(f"wrote inputs in {time.monotonic() - t:.1f} s", flush=True)

        workloads = [("1 file", big, 0, large_bytes, 1),
                     (f"{args.files} files", many_dir, args.files, many_bytes, args.files)]
        if parts & {"upload", "reconstruct"}:
            up_rows: list[list[str]] = []
            rc_rows: list[list[str]] = []
            rc_best: dict[tuple[str, int], tuple[float | None, float | None]] = {}
            for cs in chunks:
                for wname, src, many, nbytes, nfiles in workloads:
                    ups: dict[str, list[Result]] = {t: [] for t in tools}
                    rcs: dict[str, list[Result]] = {t: [] for t in rc_tools}
                    for rep in range(max(args.repeat, args.repeat_oms)):
                        topics = {}
                        for tool in in_turn(tools, rep):
                            fn = {MSI: bench.upload_msi, BARE: bench.upload_bare, OMS: bench.upload_oms}[tool]
                            print(f"upload {wname} {cs} B chunks: {tool} (run {rep + 1})", flush=True)
                            r, topics[tool] = fn(src, many, cs)
                            ups[tool].append(r)
                            print(f"  -> {f(r.seconds, '.1f')} s, {f(mbps(nbytes, r), '.1f')} MB/s {r.note}",
                                  flush=True)
                        if "reconstruct" in parts:
                            for tool in in_turn(rc_tools, rep):
                                print(f"reconstruct {wname} {cs} B chunks: {tool} (run {rep + 1})", flush=True)
                                if tool == MSI:
                                    r = bench.reconstruct_msi(topics[MSI], nfiles)
                                elif tool in (BARE, BARE_WRITE):
                                    r = bench.reconstruct_bare(topics[MSI], write=tool == BARE_WRITE)
                                else:
                                    r = bench.reconstruct_oms(topics[OMS], nfiles)
                                rcs[tool].append(r)
                                print(f"  -> {f(r.seconds, '.1f')} s, {f(mbps(nbytes, r), '.1f')} MB/s {r.note}",
                                      flush=True)
                        bench.drop_topics()
                    for rows, res in ((up_rows, ups), (rc_rows, rcs)):
                        if not any(res.values()) or not res[MSI]:
                            continue
                        b = {t: best(v) for t, v in res.items()}
                        if rows is rc_rows:
                            rc_best[(wname, cs)] = (b[MSI].seconds, b[BARE].seconds)
                        for tool in res:
                            r = b[tool]
                            rows.append([wname, str(cs), tool, f(r.seconds, "7.1f"), f(mbps(nbytes, r), "8.1f"),
                                         ratio(mbps(nbytes, r), mbps(nbytes, b[BARE])),
                                         ratio(mbps(nbytes, b[MSI]), mbps(nbytes, r)) if tool != MSI else "     - ",
                                         f(r.peak_mb, "7.0f"), f(r.cpu_s, "6.1f"), r.note[:60]])
            hdr = ["workload", "chunk B", "tool", "seconds", "MB/s", "of bare", "msi vs it", "peak MB", "CPU s", "note"]
            report += print_table(f"upload (large {args.size_mib} MiB; many {args.files} x {args.file_mib:g} MiB)",
                                  hdr, up_rows)
            if rc_rows:
                report += print_table("reconstruct (bare and bare+write read msi-tui's records; openmsistream reads "
                                      "its own)", hdr, rc_rows)
                lines = [disk_floor(run_dir / "disk-floor.bin", large_bytes)]
                for wname, _src, many, nbytes, nfiles in workloads:
                    floor_s, text = files_floor(run_dir / f"files-floor-{nfiles}", nfiles, nbytes // nfiles,
                                                threads=5 if many else 1)
                    lines.append(text)
                    lines += [against_disk(wname, cs, floor_s, *rc_best[(wname, cs)])
                              for cs in chunks if (wname, cs) in rc_best]
                for line in lines:
                    print(line, flush=True)
                    report.append(line)

        if "e2e" in parts:
            rows = []
            for cs in chunks:
                e2e_best: dict[str, Result] = {}
                for tool in [t for t in tools if t != BARE]:
                    runs: list[Result] = []
                    for rep in range(runs_of(tool)):
                        print(f"e2e {args.files} files {cs} B chunks: {tool} (run {rep + 1})", flush=True)
                        r = bench.e2e(tool, many_dir, cs)
                        print(f"  -> {f(r.seconds, '.1f')} s {r.note}", flush=True)
                        runs.append(r)
                        bench.drop_topics()
                    e2e_best[tool] = best(runs)
                for tool, r in e2e_best.items():
                    rows.append([f"{args.files} x {args.file_mib:g} MiB", str(cs), tool, f(r.seconds, "7.1f"),
                                 f(mbps(many_bytes, r), "8.1f"),
                                 ratio(mbps(many_bytes, e2e_best[MSI]), mbps(many_bytes, r)) if tool != MSI
                                 else "     - ",
                                 f(r.extra.get("up_peak"), "7.0f"), f(r.extra.get("rc_peak"), "7.0f"),
                                 f(r.extra.get("copy_s"), "5.1f"), r.note[:60]])
            report += print_table("end to end (first file copied in -> last file reconstructed)",
                                  ["files", "chunk B", "tool", "seconds", "MB/s", "msi vs it", "up MB", "rc MB",
                                   "copy s", "note"], rows)

        if "latency" in parts:
            from msi_tui.engine.watch import DEFAULT_SETTLE_S

            rows = []
            cs = chunks[0]
            variants: list[tuple[str, str | None]] = [
                (MSI, None if s == "default" else s) for s in args.latency_settles.split(",") if s]
            variants += [(OMS, None)] if OMS in tools else []
            for tool, settle in variants:
                window = (DEFAULT_SETTLE_S if settle is None else float(settle)) if tool == MSI else None
                label = tool if tool != MSI else f"{tool} (settle {window:g} s{', default' if settle is None else ''})"
                print(f"latency {args.latency_files} x 1000 B, {cs} B chunks: {label}", flush=True)
                r = bench.latency(tool, cs, settle)
                bench.drop_topics()
                verdict = ""
                if window is not None and r.seconds is not None:
                    verdict = "PASS" if r.seconds <= window + 0.030 else "FAIL"
                rows.append([f"{r.extra.get('n', 0)} x 1000 B", str(cs), label, f(r.seconds, "6.3f"),
                             f(r.extra.get("p95"), "6.3f"), f(r.extra.get("max"), "6.3f"), verdict, r.note[:60]])
            if rows:
                title = f"latency (file closed -> arrived in the output; one file every {args.latency_gap:g} s)"
                report += print_table(title, ["files", "chunk B", "tool", "p50 s", "p95 s", "max s",
                                              "p50<=settle+30ms", "note"], rows)
            if args.move_sizes:
                rows = []
                for size in [int(x) for x in args.move_sizes.split(",")]:
                    print(f"after-verified move round trip: {size} B", flush=True)
                    r = bench.after_verified_move(cs, size)
                    bench.drop_topics()
                    rows.append([f"{size:,} B", str(cs), f(r.extra.get("uploaded"), "7.2f"),
                                 f(r.extra.get("verified"), "7.2f"), f(r.extra.get("moved"), "7.2f"), r.note[:60]])
                report += print_table("--after-verified move (file closed -> uploaded / verified at the destination / "
                                      "moved away from the source; the move waits for 60 s unchanged)",
                                      ["file", "chunk B", "uploaded s", "verified s", "moved s", "note"], rows)

        if "memory" in parts:
            size = int(args.big_gib * GIB)
            huge = run_dir / "huge.bin"
            for p in (big, many_dir, run_dir / "trash"):  # room for the huge file (speed is not measured here)
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
            t = time.monotonic()
            write_random_file(huge, size)
            print(f"wrote {args.big_gib:g} GiB in {time.monotonic() - t:.1f} s", flush=True)
            cs = 16384
            rows = []
            for tool in tools:
                print(f"memory {args.big_gib:g} GiB: {tool}", flush=True)
                fn = {MSI: bench.upload_msi, BARE: bench.upload_bare, OMS: bench.upload_oms}[tool]
                up, topic = fn(huge, 0, cs)
                if tool == MSI:
                    rc = bench.reconstruct_msi(topic, 1)
                elif tool == BARE:
                    rc = bench.reconstruct_bare(topic)
                else:
                    rc = bench.reconstruct_oms(topic, 1)
                bench.drop_topics()
                for side, r in (("upload", up), ("reconstruct", rc)):
                    verdict = "" if tool != MSI else ("PASS" if r.peak_mb and r.peak_mb < 200 else "FAIL")
                    rows.append([f"{args.big_gib:g} GiB", side, tool, f(r.peak_mb, "7.0f"), f(r.seconds, "7.1f"),
                                 f(mbps(size, r), "8.1f"), verdict, r.note[:60]])
            report += print_table("memory (peak RSS, 16384 B chunks; msi-tui target < 200 MB)",
                                  ["file", "side", "tool", "peak MB", "seconds", "MB/s", "<200MB", "note"], rows)
        if broker_sampler is not None:
            broker_sampler.stop()
            line = f"broker (info): local Kafka JVM peak RSS {broker_sampler.hwm_kb * 1024 / MB:.0f} MB"
            print(line)
            report.append(line)
        return 0
    finally:
        if bench is not None:
            for child in bench.children:
                child.kill()
            del bench.admin  # closes its connections before the broker goes away
        if broker is not None:
            broker.stop()
            if own_home and not args.keep and not broker.home.is_relative_to(run_dir):
                shutil.rmtree(broker.home, ignore_errors=True)
        if args.keep:
            print(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def broker_home_default(run_dir: Path) -> Path:
    """The LocalBroker's home: in memory (tmpfs) when there is room, so that what the broker
    writes (each upload run adds 1 GiB to its log) never queues on the disk with what the
    tools write or read, as it would not where the broker has a machine of its own. With the
    log on this machine's disk its writeback ran at the disk's 435 MB/s during the uploads
    (vmstat), and the same 1000-file upload took 1.5 to 3.4 s from one run to the next."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free >= BROKER_TMPFS_GIB * GIB:
        return Path(tempfile.mkdtemp(prefix="msi-compare-broker-", dir=shm))
    return run_dir / "broker"


def disk_floor(path: Path, nbytes: int) -> str:
    """What writing `nbytes` into one file costs here, Kafka aside: 1 MiB writes, then an
    fsync. Twice in a row, because on a VM that hands freed memory back to its host the same
    write can take several times longer one time than the next."""
    block = os.urandom(MIB)
    times = []
    for _ in range(2):
        t = time.monotonic()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(nbytes // MIB):
                os.write(fd, block)
            cached = time.monotonic() - t
            os.fsync(fd)
            times.append((cached, time.monotonic() - t))
        finally:
            os.close(fd)
            path.unlink()
    (c1, d1), (c2, d2) = times
    return (f"disk (info): {nbytes // MIB} MiB in 1 MiB writes, then fsync: in the page cache after {c1:.2f} s, "
            f"on disk after {d1:.2f} s; the same again at once: {c2:.2f} s and {d2:.2f} s")


def files_floor(folder: Path, files: int, file_bytes: int, threads: int = 5) -> tuple[float | None, str]:
    """What writing `files` files costs here the way a reconstructor must, Kafka and digests
    aside: each created in a staging folder, written with O_DIRECT where the filesystem takes
    it (from one aligned buffer), fsynced and linked under its name; the folder synced at the
    end; `threads` at once (one file is rebuilt by one thread). Also what creating that many
    empty files costs: on ext4 without a journal (this machine's disk) a new inode is looked
    for past those freed half an hour and more before (measured here), so deleting many
    files slows creating new ones long after. Returns the writing's seconds (None if it
    failed) and a line saying all that."""
    staging, final = folder / "staging", folder / "final"
    staging.mkdir(parents=True)
    final.mkdir()
    t = time.monotonic()
    for i in range(files):
        os.close(os.open(folder / f"empty-{i}", os.O_WRONLY | os.O_CREAT, 0o644))
    create_s = time.monotonic() - t
    # Whole pages only, as msi-tui writes directly (a file's tail off the page goes buffered).
    direct = getattr(os, "O_DIRECT", 0) if file_bytes % 4096 == 0 else 0
    try:
        os.close(os.open(staging / "probe", os.O_WRONLY | os.O_CREAT | direct, 0o644))
    except OSError:
        direct = 0  # (a filesystem without direct I/O: written through the page cache then)
    data = os.urandom(MIB)
    errors: list[OSError] = []

    def write(first: int) -> None:
        buf = mmap.mmap(-1, MIB)  # page aligned, as O_DIRECT needs
        buf[:] = data
        try:
            for i in range(first, files, threads):
                staged = staging / f"{i}.part"
                fd = os.open(staged, os.O_WRONLY | os.O_CREAT | direct, 0o644)
                try:
                    left = file_bytes
                    while left:
                        n = min(left, MIB)
                        os.write(fd, memoryview(buf)[:n] if direct else data[:n])
                        left -= n
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.link(staged, final / f"file-{i}")
                os.unlink(staged)
        except OSError as exc:
            errors.append(exc)

    t = time.monotonic()
    workers = [threading.Thread(target=write, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    dir_fd = os.open(final, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    write_s = time.monotonic() - t
    if errors:
        return None, f"disk (info): writing {files} files as a reconstructor must failed: {errors[0]}"
    how = "O_DIRECT" if direct else "buffered"
    return write_s, (f"disk (info): {plural(files, 'file')} of {file_bytes / MIB:g} MiB written as a "
                     f"reconstructor must (created, {how} 1 MiB writes, fsync, link; {plural(threads, 'thread')}; "
                     f"no Kafka, no digest): {write_s:.2f} s; "
                     f"creating {plural(files, 'empty file')} there: {create_s:.2f} s")


def against_disk(workload: str, cs: int, floor_s: float | None, msi_s: float | None, bare_s: float | None) -> str:
    """One reconstruct workload set against the disk: where writing the bytes durably takes
    longer than the bare consumer takes to read them, no reconstructor can keep up with it."""
    if floor_s is None or msi_s is None:
        return f"disk-bound (info): {workload}, {cs} B: not compared (a run failed)"
    verdict = ""
    if bare_s is not None:
        verdict = ("; slower than the bare consumer: no reconstructor keeps up with it here" if floor_s > bare_s
                   else "; faster than the bare consumer")
    return (f"disk-bound (info): {workload}, {cs} B: msi-tui {msi_s:.1f} s, the bare consumer {f(bare_s, '.1f')} s, "
            f"writing the bytes alone {floor_s:.1f} s{verdict}. msi-tui takes {msi_s / floor_s:.2f}x the disk's time")


def _byte_compile_msi_tui() -> None:
    """Byte-compile msi-tui once, as installing a wheel does. From a source checkout under
    PYTHONDONTWRITEBYTECODE=1 (as on this machine) every run compiled ~20 modules at start,
    ~45 ms a run that an installed msi-tui, the bare clients and OpenMSIStream never pay."""
    import compileall

    import msi_tui

    compileall.compile_dir(Path(msi_tui.__file__).parent, quiet=1)


def _msi_version() -> str:
    try:
        import importlib.metadata as m

        return m.version("msi-tui")
    except Exception:
        return "?"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_bare-produce":
        sys.exit(bare_produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "_warm-up":
        warm_up_broker(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "_bare-consume":
        sys.exit(bare_consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), *sys.argv[6:7]))
    sys.exit(main())
