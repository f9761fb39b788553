#!/usr/bin/env python3
"""Lab run: three uploaders and a consumer group of reconstructors on a three-broker cluster,
through crashes, a broker outage, an abandoned upload, a burst of small files and a hand-over.

What it does, in this order, while files keep flowing:

  start   a LocalCluster (KRaft controller + 3 brokers) on free ports in a temporary home,
          one topic of 12 partitions (replication 3), 3 uploaders (each its own source folder
          and MSI_TUI_STATE_DIR) and 3 reconstructors in one consumer group (each its own
          output folder and MSI_TUI_STATE_DIR); --files per uploader (1 KB .. 20 MB) are
          written into the source folders over --write-seconds
  (a)     SIGKILL reconstructor 1 and start reconstructor 4 in its folder (same group: the
          service restarted where it ran, which also removes what the killed one left staged)
  (b)     SIGKILL uploader 2 while it sends a --mid-mib file, restart it (same state, folder)
  (c)     SIGKILL the broker leading most partitions; start it again after --outage-seconds
  (d)     SIGKILL uploader 3 --big-kill-after s into a --big-mib file, delete that source
          file, restart the uploader: the upload is abandoned half-way
  (e)     --small-files files of 1-8 KB, spread over the three source folders
  (f)     `quit` on reconstructor 2's stdin: its partitions move to the others; the rest drain

Once settled (every expected file arrived, or no progress for --settle-timeout s) it gives
the members --commit-grace s to commit, reads the group's committed offsets, quits every
process gracefully (`quit` on stdin, SIGKILL after --quit-timeout s) so the tally sees the
final state, reads the offsets again, and prints files expected, arrived, lost, duplicated,
partial, staged leftovers, each partition's committed offset for the group against its end
offset (AdminClient list_consumer_group_offsets, and the high watermarks), and whether the
abandoned big file showed up. Expected files are the source files that exist at the end
(not the deleted one). Then it stops the cluster and removes the work folder.

Targets (exit code 0 only when all hold):
  - 0 lost, 0 partial (no output file under an expected name with other bytes), and the
    deleted big file never present with other bytes than the original;
  - 0 staged leftovers (no staged `.part` file under any output folder's .msi-tui-staging;
    the empty lock file of a member killed in a folder no member uses again is listed, not
    counted: the next reconstructor started there removes it);
  - duplicates (the same source file present more than once across all output folders,
    `name (2).ext` copies of identical content included) only inside the reconstructor's
    window around a kill: the first copy published (its ctime) within --dup-window s of
    one of the run's SIGKILLs (default 5 s, librdkafka's auto.commit.interval.ms: files a
    crashed member published after its last commit are replayed by the member that takes
    its partitions over; the product states no window of its own yet);
  - every partition's committed offset for the group at its end offset (after the quit).

    python bench/lab_cluster.py --quick     # 20 files x 3, 300 small, 5 s outage, 30 MiB big file
    python bench/lab_cluster.py             # 100 files x 3, 3000 small, 30 s outage, 300 MiB (long)
    python bench/lab_cluster.py --keep      # keep the work folder (logs, outputs, cluster) at the end

Every wait is bounded; every process it starts is stopped (process groups SIGKILLed if a
graceful quit does not end them) on any exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from msi_tui.broker.cluster import LocalCluster
from msi_tui.broker.local import free_port

PARTITIONS = 12
BROKERS = 3
UPLOADERS = 3
RECONSTRUCTORS = 3
STAGING = ".msi-tui-staging"  # msi_tui.engine.output.STAGING
QUARANTINE = ".msi-tui-quarantine"
NUMBERED = re.compile(r"(?P<stem>[^.]*) \((?P<n>\d+)\)(?P<ext>\..*)?")  # output._numbered: "a (2).b.c"
KIB, MIB = 1024, 1024 * 1024


# --- processes ----------------------------------------------------------------------------

class Child:
    """One `python -m msi_tui ...` process in its own process group; one log per start."""

    def __init__(self, name: str, args: list[str], logs: Path, env: dict[str, str]) -> None:
        self.name, self.args, self.logs, self.env = name, args, logs, env
        self.starts = 0
        self.retired = False  # stopped on purpose for good: its exit is no finding
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.logs / f"{self.name}-{self.starts}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-u", "-m", "msi_tui", *self.args], stdin=subprocess.PIPE,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env, text=True,
                                         start_new_session=True)  # own group: Ctrl-C is ours to pass on

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """SIGKILL the whole process group, as in a crash."""
        if self.running:
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(30)

    def quit(self, timeout: float) -> int | None:
        """Type `quit` and wait; SIGKILL after `timeout` s. The exit code, None when killed."""
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            return self.proc.wait(timeout)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            self.kill()
            return None


# --- files --------------------------------------------------------------------------------

@dataclass
class Source:
    size: int
    sha256: str


def write_file(root: Path, relpath: str, size: int, rng: random.Random) -> Source:
    """Random bytes under a hidden name, then renamed into place (the uploader skips dot
    files and takes a moved-in file as complete). Hashed while written."""
    final = root / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".writing-{final.name}")
    h = hashlib.sha256()
    with open(tmp, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 4 * MIB))
            h.update(block)
            f.write(block)
            left -= len(block)
    tmp.rename(final)
    return Source(size, h.hexdigest())


def mixed_size(rng: random.Random) -> int:
    """1 KB .. 20 MB, log-uniform, with now and then a chunk-boundary size."""
    if rng.random() < 0.1:
        return rng.choice([1024, 16384, 16385, 3 * 16384 - 1, 20 * MIB])
    return int(math.exp(rng.uniform(math.log(1024), math.log(20 * MIB))))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


@dataclass
class OutFile:
    folder: int  # index into the output folders
    relpath: str  # as found
    base: str  # the relpath with a " (n)" numbering taken off
    size: int
    ctime: float  # inode change time: when it was linked under its name (published)


@dataclass
class Scan:
    files: list[OutFile] = field(default_factory=list)
    staged: list[tuple[Path, int]] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)


def scan_outputs(outs: list[Path]) -> Scan:
    """Every file of every output folder; staged and quarantined files apart."""
    scan = Scan()
    for index, out in enumerate(outs):
        for dirpath, _dirs, files in os.walk(out):
            here = Path(dirpath)
            hidden = here.relative_to(out).parts[:1]
            for name in files:
                path = here / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # published or discarded meanwhile
                if hidden == (STAGING,):
                    scan.staged.append((path, st.st_size))
                elif hidden == (QUARANTINE,):
                    scan.quarantined.append(path)
                elif hidden and hidden[0].startswith("."):
                    continue
                else:
                    rel = path.relative_to(out).as_posix()
                    m = NUMBERED.fullmatch(name)
                    base_name = f"{m['stem']}{m['ext'] or ''}" if m else name
                    base = rel[: len(rel) - len(name)] + base_name
                    scan.files.append(OutFile(index, rel, base, st.st_size, st.st_ctime))
    return scan


# --- Kafka --------------------------------------------------------------------------------

def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=BROKERS)],
                                  request_timeout=30)
    futures[topic].result(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every partition has a leader
        meta = admin.list_topics(topic, timeout=10).topics[topic]
        if len(meta.partitions) == PARTITIONS and all(p.leader >= 0 for p in meta.partitions.values()):
            return
        time.sleep(0.5)
    raise RuntimeError(f"topic {topic} has no leader for every partition after 60 s")


def busiest_broker(bootstrap: str, topic: str) -> tuple[int, int]:
    """(node id, partitions led) of the broker leading most of the topic's partitions."""
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    leaders = Counter(p.leader for p in meta.topics[topic].partitions.values() if p.leader >= 0)
    return leaders.most_common(1)[0]


def group_offsets(bootstrap: str, topic: str, group: str) -> dict[int, tuple[int | None, int | None]]:
    """Per partition (committed offset of the group, end offset); None where unknown."""
    committed: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    ends: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
        result = admin.list_consumer_group_offsets([request], request_timeout=15)[group].result(timeout=20)
        for tp in result.topic_partitions:
            committed[tp.partition] = tp.offset if tp.offset >= 0 else None  # -1001: nothing committed
    except KafkaException as exc:
        print(f"  (committed offsets unavailable: {exc})")
    # A bare consumer that never subscribes: the group id is required, but no group is joined.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lab-watermarks-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        for p in range(PARTITIONS):
            try:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            except KafkaException:
                pass
    finally:
        consumer.close()
    return {p: (committed[p], ends[p]) for p in range(PARTITIONS)}


def at_end(offsets: dict[int, tuple[int | None, int | None]]) -> int:
    return sum(1 for c, e in offsets.values() if c is not None and c == e)


# --- the run ------------------------------------------------------------------------------

@dataclass
class Kill:
    what: str  # "reconstructor 1", "uploader 2", "broker 3"
    at: float  # wall clock (compared with file ctimes)


class Lab:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.started = time.monotonic()
        self.srcs = [work / f"src{i}" for i in range(1, UPLOADERS + 1)]
        self.outs: list[Path] = []
        self.logs = work / "logs"
        self.logs.mkdir()
        for d in self.srcs:
            d.mkdir()
        self.sources: dict[str, Source] = {}  # relpath (unique across uploaders) -> what was written
        self.sources_lock = threading.Lock()
        self.kills: list[Kill] = []
        self.notes: list[str] = []  # what did not go as planned (a kill that missed its file, ...)
        self.stop_writing = threading.Event()
        self.writers: list[threading.Thread] = []
        self.uploaders: list[Child] = []
        self.reconstructors: list[Child] = []
        self.cluster: LocalCluster | None = None
        self.bootstrap = ""
        self.topic = f"lab-{uuid.uuid4().hex[:8]}"
        self.group = f"lab-group-{uuid.uuid4().hex[:8]}"
        self.big_relpath = f"u3/big/big_{args.big_mib}MiB.bin"
        self.big_source: Source | None = None

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f} s] {line}", flush=True)

    def children(self) -> list[Child]:
        return [*self.uploaders, *self.reconstructors]

    # -- set-up ---------------------------------------------------------------------------

    def start_cluster(self) -> None:
        ports: set[int] = set()
        while len(ports) < BROKERS + 1:
            ports.add(free_port())
        *broker_ports, controller_port = sorted(ports)
        self.cluster = LocalCluster(self.work / "cluster", brokers=BROKERS, broker_ports=broker_ports,
                                    controller_port=controller_port, heap_mb=256)
        self.bootstrap = self.cluster.start(timeout=180)
        create_topic(self.bootstrap, self.topic)
        self.say(f"cluster up at {self.bootstrap}; topic {self.topic} ({PARTITIONS} partitions, replication {BROKERS})")

    def common(self) -> list[str]:
        return ["--headless", "--bootstrap", self.bootstrap, "--topic", self.topic,
                "--partitions", str(PARTITIONS), "--update-seconds", "-1"]

    def new_reconstructor(self, out: Path | None = None) -> Child:
        j = len(self.reconstructors) + 1
        if out is None:
            out = self.work / f"out{j}"
            self.outs.append(out)
        env = dict(os.environ, MSI_TUI_STATE_DIR=str(self.work / "state" / f"r{j}"))
        child = Child(f"reconstructor{j}", ["reconstruct", str(out), *self.common(), "--group-id", self.group],
                      self.logs, env)
        self.reconstructors.append(child)
        child.start()
        return child

    def start_processes(self) -> None:
        for _ in range(RECONSTRUCTORS):
            self.new_reconstructor()
        for i, src in enumerate(self.srcs, 1):
            env = dict(os.environ, MSI_TUI_STATE_DIR=str(self.work / "state" / f"u{i}"))
            child = Child(f"uploader{i}", ["upload", str(src), *self.common()], self.logs, env)
            self.uploaders.append(child)
            child.start()
        self.say(f"{UPLOADERS} uploaders and {RECONSTRUCTORS} reconstructors started (group {self.group})")

    # -- traffic --------------------------------------------------------------------------

    def add_file(self, uploader: int, relpath: str, size: int, rng: random.Random) -> Source:
        source = write_file(self.srcs[uploader - 1], relpath, size, rng)
        with self.sources_lock:
            self.sources[relpath] = source
        return source

    def write_mixed(self, uploader: int) -> None:
        """--files files of mixed sizes into one source folder, spread over --write-seconds."""
        rng = random.Random(self.args.seed * 1000 + uploader)
        pause = self.args.write_seconds / max(1, self.args.files)
        for n in range(self.args.files):
            if self.stop_writing.wait(pause if n else 0):
                return
            self.add_file(uploader, f"u{uploader}/run{n % 5}/trace_{n:04}.trc", mixed_size(rng), rng)

    def write_small(self) -> None:
        """--small-files files of 1-8 KB, round robin over the source folders, over --small-seconds."""
        rng = random.Random(self.args.seed * 1000 + 99)
        pause = self.args.small_seconds / max(1, self.args.small_files)
        for n in range(self.args.small_files):
            if self.stop_writing.is_set():
                return
            uploader = n % UPLOADERS + 1
            self.add_file(uploader, f"u{uploader}/small/s{n // 100:02}/small_{n:05}.dat", rng.randint(KIB, 8 * KIB),
                          rng)
            time.sleep(pause)

    def arrived(self, expected: dict[str, Source] | None = None) -> tuple[int, int, int]:
        """(expected files present with the right size somewhere, output files, output bytes):
        cheap enough to poll; the final tally compares bytes."""
        if expected is None:
            with self.sources_lock:
                expected = dict(self.sources)
        scan = scan_outputs(self.outs)
        sizes: dict[str, set[int]] = {}
        for f in scan.files:
            sizes.setdefault(f.base, set()).add(f.size)
        count = sum(1 for rel, s in expected.items() if s.size in sizes.get(rel, ()))
        return count, len(scan.files), sum(f.size for f in scan.files) + sum(size for _, size in scan.staged)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float, every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(every)
        self.note(f"timed out after {timeout:.0f} s waiting for {what}")
        return False

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.say(f"NOTE: {text}")

    # -- the events -----------------------------------------------------------------------

    def kill_reconstructor(self) -> None:
        """(a) SIGKILL reconstructor 1; a fourth joins the group in its folder."""
        victim = self.reconstructors[0]
        victim.retired = True
        victim.kill()
        self.kills.append(Kill("reconstructor 1", time.time()))
        self.new_reconstructor(self.outs[0])
        self.say(f"(a) SIGKILL reconstructor 1; reconstructor 4 started in its folder ({self.outs[0].name}, "
                 "same group)")

    def kill_uploader_during(self, index: int, relpath: str, size: int, after: float, delete: bool, label: str) -> None:
        """SIGKILL uploader `index` `after` s into sending `relpath` (written now), optionally
        delete that file, and restart the uploader with the same state dir and folder."""
        uploader = self.uploaders[index - 1]
        source = self.add_file(index, relpath, size, random.Random(self.args.seed * 7 + index))
        if delete:
            self.big_source = source
        sending = f"sending {relpath} ("
        if self.wait_for(lambda: sending in uploader.output(), f"uploader {index} to start sending {relpath}",
                         timeout=180, every=0.05):
            time.sleep(after)
        mid_file = sending in uploader.output() and f"uploaded {relpath} (" not in uploader.output()
        uploader.kill()
        self.kills.append(Kill(f"uploader {index}", time.time()))
        if not mid_file:
            self.note(f"{label}: uploader {index} was not mid-file when killed (finished or never started it)")
        if delete:
            (self.srcs[index - 1] / relpath).unlink()
            with self.sources_lock:
                del self.sources[relpath]
        uploader.start()
        gone = ", source file deleted" if delete else ""
        self.say(f"{label} SIGKILL uploader {index} {after:.1f} s into {relpath} ({size // MIB} MiB"
                 f"{', mid-file' if mid_file else ', NOT mid-file'}){gone}; restarted (start #{uploader.starts})")

    def broker_outage(self) -> None:
        """(c) SIGKILL the broker leading most partitions; start it again after the outage."""
        assert self.cluster is not None
        node, led = busiest_broker(self.bootstrap, self.topic)
        self.cluster.kill_broker(node - 1)  # node ids of brokers start at 1
        self.kills.append(Kill(f"broker {node}", time.time()))
        self.say(f"(c) SIGKILL broker {node} (leader of {led} of {PARTITIONS} partitions) "
                 f"for {self.args.outage_seconds:g} s")
        time.sleep(self.args.outage_seconds)
        self.cluster.start(timeout=180)
        self.say(f"(c) broker {node} back")

    def hand_over(self) -> None:
        """(f) `quit` on reconstructor 2: it commits and leaves; the others take its partitions."""
        leaving = self.reconstructors[1]
        leaving.retired = True
        t = time.monotonic()
        code = leaving.quit(timeout=self.args.quit_timeout)
        how = f"exit code {code}" if code is not None else f"did not exit in {self.args.quit_timeout:g} s: SIGKILLed"
        if code != 0:
            self.note(f"(f) reconstructor 2's graceful quit: {how}")
        self.say(f"(f) quit reconstructor 2 gracefully: {how} after {time.monotonic() - t:.1f} s")

    # -- settling -------------------------------------------------------------------------

    def settle(self, expected: dict[str, Source]) -> bool:
        """Until every expected file is here (True), or nothing moved for --settle-timeout s."""
        last, last_change = None, time.monotonic()
        hard_stop = time.monotonic() + self.args.settle_max
        next_report = 0.0
        while time.monotonic() < hard_stop:
            state = self.arrived(expected)
            now = time.monotonic()
            if state != last:
                last, last_change = state, now
            if state[0] == len(expected):
                self.say(f"settled: all {len(expected)} expected files arrived")
                return True
            if now - last_change > self.args.settle_timeout:
                self.say(f"settled: no progress for {self.args.settle_timeout:g} s "
                         f"({state[0]} of {len(expected)} arrived)")
                return False
            if now >= next_report:
                self.say(f"draining: {state[0]} of {len(expected)} expected files arrived")
                next_report = now + 15
            time.sleep(1.0)
        self.note(f"still making progress after --settle-max {self.args.settle_max:g} s: stopped waiting")
        return False

    def wait_for_commits(self) -> dict[int, tuple[int | None, int | None]]:
        """The members commit every few seconds: give them --commit-grace s to reach the ends."""
        deadline = time.monotonic() + self.args.commit_grace
        while True:
            offsets = group_offsets(self.bootstrap, self.topic, self.group)
            if at_end(offsets) == PARTITIONS or time.monotonic() >= deadline:
                return offsets
            time.sleep(1.0)

    # -- whole run ------------------------------------------------------------------------

    def run(self) -> bool:
        a = self.args
        self.start_cluster()
        self.start_processes()
        writers = self.writers = [threading.Thread(target=self.write_mixed, args=(i,), daemon=True, name=f"writer{i}")
                                  for i in range(1, UPLOADERS + 1)]
        for w in writers:
            w.start()
        self.say(f"writing {a.files} files of 1 KB .. 20 MB into each of {UPLOADERS} source folders "
                 f"over {a.write_seconds:g} s")
        first = min(5, a.files * UPLOADERS)
        flowing = self.wait_for(lambda: self.arrived()[0] >= first, f"the first {first} files to arrive",
                                timeout=180, every=0.5)
        self.say(f"{self.arrived()[0]} files arrived: " + ("traffic is flowing" if flowing else "going on regardless"))

        self.kill_reconstructor()                                                     # (a)
        time.sleep(a.gap_seconds)
        self.kill_uploader_during(2, "u2/mid/mid_file.bin", a.mid_mib * MIB, after=a.mid_kill_after,
                                  delete=False, label="(b)")                          # (b)
        time.sleep(a.gap_seconds)
        self.broker_outage()                                                          # (c)
        time.sleep(a.gap_seconds)
        self.kill_uploader_during(3, self.big_relpath, a.big_mib * MIB, after=a.big_kill_after,
                                  delete=True, label="(d)")                           # (d)

        for w in writers:
            w.join(timeout=a.write_seconds + 600)
        self.say(f"mixed files all written; (e) writing {a.small_files} small files over {a.small_seconds:g} s")
        self.write_small()                                                            # (e)
        self.say("(e) small files all written")
        self.hand_over()                                                              # (f)

        expected = self.expected_at_end()
        settled = self.settle(expected)
        live = self.wait_for_commits()
        self.say(f"committed offsets at their end while the members run: {at_end(live)} of {PARTITIONS}")
        for child in self.children():  # anyone who died on their own is a finding
            if not child.retired and child.proc is not None and child.proc.poll() is not None:
                self.note(f"{child.name} exited on its own with code {child.proc.returncode} ({child.log_path})")
        self.stop_processes()
        final = group_offsets(self.bootstrap, self.topic, self.group)
        return self.report(expected, live, final, settled)

    def expected_at_end(self) -> dict[str, Source]:
        """Every source file that exists now (not the deleted big file), with its digest."""
        expected = {}
        with self.sources_lock:
            written = dict(self.sources)
        for src in self.srcs:
            for dirpath, dirs, files in os.walk(src):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in files:
                    if name.startswith("."):
                        continue
                    path = Path(dirpath) / name
                    rel = path.relative_to(src).as_posix()
                    size = path.stat().st_size
                    known = written.get(rel)
                    expected[rel] = known if known and known.size == size else Source(size, sha256_of(path))
        return expected

    def stop_processes(self) -> None:
        """Quit every live process gracefully (uploaders first), in parallel; SIGKILL stragglers."""
        live = [c for c in self.children() if c.running]
        codes: dict[str, int | None] = {}

        def quit_one(child: Child) -> None:
            codes[child.name] = child.quit(timeout=self.args.quit_timeout)

        for group in ([c for c in live if c in self.uploaders], [c for c in live if c in self.reconstructors]):
            threads = [threading.Thread(target=quit_one, args=(c,), daemon=True) for c in group]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.args.quit_timeout + 40)
        self.say("quit: " + ", ".join(f"{n} {'exit ' + str(c) if c is not None else 'SIGKILLed'}"
                                      for n, c in codes.items()))
        for name, code in codes.items():
            if code != 0:
                self.note(f"{name}'s graceful quit: " + (
                    f"exit code {code}" if code is not None
                    else f"still running after {self.args.quit_timeout:g} s, SIGKILLed"))

    # -- the tally ------------------------------------------------------------------------

    def report(self, expected: dict[str, Source], live: dict[int, tuple[int | None, int | None]],
               offsets: dict[int, tuple[int | None, int | None]], settled: bool) -> bool:
        a = self.args
        scan = scan_outputs(self.outs)
        by_base: dict[str, list[OutFile]] = {}
        for f in scan.files:
            by_base.setdefault(f.base, []).append(f)

        def content(f: OutFile, source: Source) -> bool:
            return f.size == source.size and sha256_of(self.outs[f.folder] / f.relpath) == source.sha256

        lost, partial, duplicated = [], [], []
        for rel, source in sorted(expected.items()):
            copies = by_base.get(rel, [])
            same = sorted((f for f in copies if content(f, source)), key=lambda f: f.ctime)
            if not same:
                lost.append(rel)
            if len(same) < len(copies):
                partial.append(rel)
            if len(same) > 1:
                duplicated.append((rel, same))
        unexpected = sorted(f"{self.outs[f.folder].name}/{f.relpath}" for f in scan.files
                            if f.base not in expected and f.base != self.big_relpath)

        def window(copies: list[OutFile]) -> tuple[str, float, bool]:
            """The SIGKILL nearest the first copy's publication, the offset, inside --dup-window?"""
            t = copies[0].ctime
            if not self.kills:
                return "no kill", math.inf, False
            k = min(self.kills, key=lambda k: abs(t - k.at))
            return k.what, t - k.at, abs(t - k.at) <= a.dup_window

        outside = [d for d in duplicated if not window(d[1])[2]]
        staged_bytes = sum(size for _, size in scan.staged)
        staged_per_folder = Counter(path.relative_to(self.work).parts[0] for path, _ in scan.staged)

        big_copies = by_base.get(self.big_relpath, [])
        big_whole = [f for f in big_copies if self.big_source and content(f, self.big_source)]
        big_partial = len(big_copies) - len(big_whole)

        ends_ok = at_end(offsets)
        print()
        print("=" * 78)
        print(f"settled          {'every expected file arrived' if settled else 'NOT all arrived (stopped waiting)'}")
        print(f"files expected   {len(expected)} (source files that exist at the end)")
        print(f"arrived          {len(expected) - len(lost)}")
        print(f"lost             {len(lost)} {lost[:5] if lost else ''}")
        print(f"duplicated       {len(duplicated)} files, {sum(len(c) - 1 for _, c in duplicated)} extra copies; "
              f"{len(outside)} outside the +-{a.dup_window:g} s window around a kill")
        for rel, copies in duplicated[:10]:
            what, dt, inside = window(copies)
            where = ", ".join(f"{self.outs[c.folder].name}/{c.relpath}" for c in copies)
            print(f"  {rel}: first copy {dt:+.1f} s from SIGKILL {what} ({'inside' if inside else 'OUTSIDE'}); {where}")
        print(f"partial          {len(partial)} {partial[:5] if partial else ''}")
        parts = sum(1 for path, _ in scan.staged if path.name.endswith(".part"))
        print(f"staged leftovers {len(scan.staged)} files ({parts} .part), {staged_bytes:,} bytes"
              + (f"; per folder: {', '.join(f'{k} {v}' for k, v in sorted(staged_per_folder.items()))}"
                 if scan.staged else ""))
        for path, size in sorted(scan.staged, key=lambda x: -x[1])[:5]:
            print(f"  {path.relative_to(self.work)} ({size:,} bytes)")
        per_folder = Counter(self.outs[f.folder].name for f in scan.files)
        print(f"files per folder {', '.join(f'{out.name} {per_folder[out.name]}' for out in self.outs)}")
        print(f"quarantined      {len(scan.quarantined)} (information)")
        print(f"unexpected files {len(unexpected)} {unexpected[:5] if unexpected else ''} (information)")
        print(f"deleted big file {self.big_relpath}: "
              + (f"arrived PARTIAL ({big_partial} copies with other bytes)" if big_partial else
                 f"arrived whole in {len(big_whole)} copies (the uploader had sent it all)" if big_whole else
                 "did not arrive (as intended)"))
        print()

        def show(offset: int | None) -> str:
            return "-" if offset is None else str(offset)

        print(f"group {self.group}, topic {self.topic}: committed offsets while running and after the quit")
        print("partition    running  after quit        end     behind")
        for p, (committed, end) in offsets.items():
            behind = end - committed if committed is not None and end is not None else None
            print(f"{p:9}  {show(live[p][0]):>9}  {show(committed):>10}  {show(end):>9}  {show(behind):>9}"
                  f"{'' if behind == 0 else '   <-'}")
        print(f"partitions whose committed offset is at its end: {ends_ok} of {PARTITIONS} "
              f"({at_end(live)} while running)")
        print()
        print("events           " + "; ".join(f"SIGKILL {k.what}" for k in self.kills)
              + "; (f) graceful quit of reconstructor 2")
        for n in self.notes:
            print(f"note             {n}")
        tracebacks = [c.name for c in self.children() for log in sorted(self.logs.glob(f"{c.name}-*.log"))
                      if "Traceback" in log.read_text(errors="replace")]
        print(f"tracebacks       {', '.join(sorted(set(tracebacks))) or 'none'} (in the process logs)")

        failed = [name for name, bad in [
            ("lost", lost), ("partial", partial), ("big file partial", big_partial), ("staged leftovers", parts),
            ("duplicates outside the window", outside), ("offsets not at end", ends_ok != PARTITIONS)] if bad]
        print(f"elapsed          {time.monotonic() - self.started:.0f} s")
        print(f"RESULT           {'PASS' if not failed else 'FAIL: ' + ', '.join(failed)}")
        print("=" * 78, flush=True)
        return not failed

    def clean_up(self) -> None:
        """Stop everything this run started, whatever state it is in."""
        self.stop_writing.set()
        for writer in self.writers:
            writer.join(timeout=30)  # at most the file being written
        for child in self.children():
            child.kill()
        if self.cluster is not None:
            self.cluster.stop(timeout=30)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small numbers for a fast check (each default below is scaled down)")
    parser.add_argument("--files", type=int, help="mixed files per uploader (100; quick 20)")
    parser.add_argument("--write-seconds", type=float, help="over how long they are written (100; quick 40)")
    parser.add_argument("--small-files", type=int, help="small files for (e) (3000; quick 300)")
    parser.add_argument("--small-seconds", type=float, help="over how long they are written (30; quick 5)")
    parser.add_argument("--outage-seconds", type=float, help="broker down for (c) (30; quick 5)")
    parser.add_argument("--big-mib", type=int, help="the file of (d) (300; quick 30)")
    parser.add_argument("--big-kill-after", type=float, help="SIGKILL this long into sending it (1.5; quick 0.3)")
    parser.add_argument("--mid-mib", type=int, help="the file uploader 2 is killed on in (b) (40; quick 10)")
    parser.add_argument("--mid-kill-after", type=float, help="SIGKILL this long into sending it (0.5; quick 0.1)")
    parser.add_argument("--gap-seconds", type=float, help="between the events (8; quick 3)")
    parser.add_argument("--settle-timeout", type=float, help="settled when nothing moved this long (180; quick 90)")
    parser.add_argument("--settle-max", type=float, default=3600, help="stop waiting after this long anyway")
    parser.add_argument("--commit-grace", type=float, default=20, help="after settling, for commits to reach the ends")
    parser.add_argument("--dup-window", type=float, default=5.0,
                        help="a duplicate is excused when its first copy was published within this many seconds "
                             "of a SIGKILL (librdkafka's auto.commit.interval.ms: 5 s)")
    parser.add_argument("--quit-timeout", type=float, default=120, help="for a graceful quit before SIGKILL")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, outputs, cluster)")
    args = parser.parse_args(argv)
    defaults = {  # name: (full, quick)
        "files": (100, 20), "write_seconds": (100, 40), "small_files": (3000, 300), "small_seconds": (30, 5),
        "outage_seconds": (30, 5), "big_mib": (300, 30), "big_kill_after": (1.5, 0.3), "mid_mib": (40, 10),
        "mid_kill_after": (0.5, 0.1), "gap_seconds": (8, 3), "settle_timeout": (180, 90),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def terminated(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM takes the same path as Ctrl-C: through the finally below

    signal.signal(signal.SIGTERM, terminated)
    work = Path(tempfile.mkdtemp(prefix="msi-lab-cluster-"))
    lab = Lab(args, work)
    print(f"work folder {work}", flush=True)
    ok = False
    try:
        ok = lab.run()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lab.clean_up()
        if args.keep:
            print(f"kept {work} (logs in {work / 'logs'})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
