#!/usr/bin/env python3
"""Watch-folder cases: what an operator drops into a live uploader, and what comes out.

Starts a reconstructor (`msi-tui reconstruct OUT --headless`) and a live uploader
(`msi-tui upload IN --headless`, default options: settle window 0.5 s, keep after
verification) on a fresh topic, then drops into IN one case after another, each waited
for before the next:

  cp -r          a prepared tree of 200 files (4 folders, 1 to 64 KiB) copied in with `cp -r`
  mv file        a 1 MiB file made beside IN (same filesystem) and moved in with `mv`
  mv folder      a folder of 3 files (one in a subfolder) made beside IN and moved in with `mv`
  3 passes       a file appended to in 3 passes 2 s apart (open, append 64 KiB, close, wait)
  rewritten      a --big-mib file written in, then, once the uploader says it is sending it,
                 opened with O_TRUNC and written again with other bytes (mid-send)
  deleted        a --big-mib file written in, then deleted once the uploader is sending it
  non-UTF-8      a file named by the bytes b"caf\\xe9.txt"
  refused names  back\\slash.txt, C:notes.txt and tab<TAB>name.txt (Linux allows them, the
                 reconstructor does not: the uploader must refuse them)
  --small files  (default 10,000) files of 1 KiB written straight into IN/many/ by this
                 script, one after another as fast as it can (open, write, close), or with
                 --many-by-mv written into a folder beside IN and moved in with one `mv`

For each case it prints what arrived in OUT (each name, whether it is byte for byte the
source's final content, earlier versions kept as `name (N).ext` and whether each is a
whole earlier version) and what both programs printed about those names (uploaded, failed
with its reason, verified; reconstructed, earlier version kept, withdrawn). At the end: a
table of all cases, for the many small files the time from the first write to the last
file arrived, and each program's peak resident memory (VmHWM from /proc before it stops,
and the highest VmRSS sampled during the many small files).

Healthy outcome, else the exit code is 1: every file arrives whole under its name, reported
uploaded and verified at the uploader; the newest version holds the name and earlier ones
are whole; refused names are reported failed at the uploader with a reason and nothing of
them arrives; the deleted file is reported failed and nothing of it arrives; no staged
part is left over; nothing arrives that was not dropped; both programs run to the end.

    python bench/watch_folder_cases.py                      # broker at 127.0.0.1:9092 (msi-tui broker start)
    python bench/watch_folder_cases.py --quick              # without the 10,000 files
    python bench/watch_folder_cases.py --bootstrap 127.0.0.1:9092 --small 2000 --keep

msi-tui runs as `python -m msi_tui` with this interpreter (PYTHONPATH chooses which copy).
Each program gets its own MSI_TUI_STATE_DIR in the work folder; the topic is new
(wf-<random>) and is deleted at the end with its receipts topic.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from roundtrip_memory import read_status_kb  # bench/: the script's own folder is on sys.path

KIB = 1 << 10
MIB = 1 << 20
MB = 1_000_000
RESERVED_PREFIX = ".msi-tui-"  # the reconstructor's own folders in OUT (staging, quarantine)
STAGING = RESERVED_PREFIX + "staging"
QUARANTINE = RESERVED_PREFIX + "quarantine"

try:
    from msi_tui.engine.wire import shown_name
except Exception:  # the same rule, should the import fail
    import unicodedata

    def shown_name(relpath: str) -> str:
        raw = relpath.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8", "backslashreplace")
        return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


# --- the two programs --------------------------------------------------------------------


class Program:
    """One msi-tui subprocess: its lines with the time each was read, its /proc memory."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self._readers = [threading.Thread(target=self._pump, args=(s, t), daemon=True)
                         for s, t in ((self.proc.stdout, ""), (self.proc.stderr, "stderr: "))]
        for r in self._readers:
            r.start()

    def _pump(self, stream, tag: str) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
            self.lines.append((time.monotonic(), tag + line))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def status_kb(self) -> dict[str, int]:
        return read_status_kb(self.proc.pid)

    def wait_line(self, needle: str, timeout: float, since: int = 0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in self.lines[since:]:
                if needle in line:
                    return t
            if not self.alive():
                return None
            time.sleep(0.05)
        return None

    def stop(self, timeout: float = 90.0) -> int | None:
        """quit on stdin; SIGTERM, then SIGKILL, if it does not end in time (this child only)."""
        self.send("quit")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for r in self._readers:
            r.join(5)
        return self.proc.returncode


# --- what the programs said, by name -------------------------------------------------------


@dataclass
class Said:
    t: float
    kind: str
    detail: str
    line: str


UPLOADER_LINES = [
    ("sending", re.compile(r"^sending (?P<n>.+) \([^()]*, [\d,]+ chunks?\)$")),
    ("uploaded", re.compile(r"^uploaded (?P<n>.+) \([^()]* in [\d.]+ s, [^()]*\)$")),
    ("verified", re.compile(r"^verified (?P<n>.+?) at (?P<d>.+)$")),
    ("changed", re.compile(r"^WARNING: (?P<n>.+) changed while sending; it will be sent again$")),
    ("failed there", re.compile(r"^ERROR: (?P<n>.+) was (?P<d>\w+ at .*)$")),
]
RECONSTRUCTOR_LINES = [
    ("reconstructed", re.compile(r"^reconstructed (?P<n>.+) \([^()]*, verified, [\d.]+ s\)$")),
    ("duplicate", re.compile(r"^duplicate of (?P<n>.+) ignored \(already complete\)$")),
    ("earlier kept", re.compile(r"^(?P<n>.+): newer version from .*; the previous one is kept as (?P<d>.+)$")),
    ("late kept", re.compile(r"^(?P<n>.+): an older version from .* came late; kept as (?P<d>.+)$")),
    ("withdrawn", re.compile(r"^(?P<n>.+) withdrawn by its uploader \((?P<d>.*)\)$")),
    ("quarantined", re.compile(r"^ERROR: quarantined (?P<n>.+?): (?P<d>.*)$")),
    ("clash", re.compile(r"^WARNING: (?P<n>.+) from .* clashes with (?P<d>.*)$")),
]
NOT_REBUILT = re.compile(r"^ERROR: (?P<d>\w+) (?P<rest>.+)$")  # refused / abandoned <name>: <reason>


class Log:
    """A program's lines sorted by the name they are about (names as msi-tui shows them)."""

    def __init__(self, program: Program, patterns: list[tuple[str, re.Pattern]], known: set[str]) -> None:
        self.program = program
        self.patterns = patterns
        self.known = known
        self.by_name: dict[str, list[Said]] = defaultdict(list)
        self.other: list[tuple[float, str]] = []
        self._done = 0

    def _name_before_colon(self, rest: str) -> tuple[str, str] | None:
        """`name: reason` where the name may itself hold ': ' — the known name that fits."""
        i = rest.find(": ")
        first = None
        while i >= 0:
            cand = rest[:i]
            if first is None:
                first = (cand, rest[i + 2:])
            if cand in self.known:
                return cand, rest[i + 2:]
            i = rest.find(": ", i + 1)
        return first

    def update(self) -> None:
        lines = self.program.lines
        while self._done < len(lines):
            t, line = lines[self._done]
            self._done += 1
            self._classify(t, line)

    def _classify(self, t: float, line: str) -> None:
        if line.startswith("ERROR: upload failed: "):
            hit = self._name_before_colon(line[len("ERROR: upload failed: "):])
            if hit:
                self.by_name[hit[0]].append(Said(t, "failed", hit[1], line))
                return
        for kind, rx in self.patterns:
            m = rx.match(line)
            if m and (m.group("n") in self.known or kind not in ("failed there", "quarantined")):
                self.by_name[m.group("n")].append(Said(t, kind, m.groupdict().get("d") or "", line))
                return
        m = NOT_REBUILT.match(line)
        if m:
            hit = self._name_before_colon(m.group("rest"))
            if hit and hit[0] in self.known:
                self.by_name[hit[0]].append(Said(t, m.group("d"), hit[1], line))
                return
        self.other.append((t, line))

    def about(self, name: str) -> list[Said]:
        return self.by_name.get(name, [])

    def count(self, name: str, kind: str) -> int:
        return sum(1 for s in self.by_name.get(name, ()) if s.kind == kind)

    def first(self, name: str, kind: str) -> Said | None:
        return next((s for s in self.by_name.get(name, ()) if s.kind == kind), None)


# --- files ---------------------------------------------------------------------------------


def write_random(path: Path | bytes, size: int, block: int = MIB) -> str:
    """`size` random bytes into a new file; their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(block, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(4 * MIB):
            h.update(b)
    return h.hexdigest()


def same_bytes(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(4 * MIB), fb.read(4 * MIB)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def numbered_pattern(name: str) -> re.Pattern:
    """`name (N).ext` as the reconstructor names an earlier version (stem: up to the first dot)."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    return re.compile(re.escape(stem) + r" \((\d+)\)" + re.escape(dot + ext) + "$")


def files_under(root: Path) -> set[str]:
    """Relative paths (str, surrogate-escaped) of the files under root, the reserved folders aside."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_PREFIX)]
        rel = os.path.relpath(dirpath, root)
        for f in filenames:
            found.add(f if rel == "." else os.path.join(rel, f))
    return found


def staged_parts(out: Path) -> list[str]:
    try:
        return sorted(p.name for p in (out / STAGING).iterdir() if p.name.endswith(".part"))
    except FileNotFoundError:
        return []


# --- cases ---------------------------------------------------------------------------------


@dataclass
class Drop:
    """One file a case dropped, and what must become of it."""

    rel: str  # relative path (str; surrogate escapes for non-UTF-8 bytes)
    kind: str  # "arrive" | "refused" | "deleted"
    earlier: dict[str, str] = field(default_factory=dict)  # sha256 -> label of whole earlier versions

    @property
    def shown(self) -> str:
        return shown_name(self.rel)


@dataclass
class Row:
    case: str
    file: str
    arrived: str
    equal: str
    earlier: str
    uploader: str
    reconstructor: str
    verdict: str
    why: list[str] = field(default_factory=list)


@dataclass
class Case:
    key: str
    title: str
    how: str
    drops: list[Drop]
    bulk: bool = False
    notes: list[str] = field(default_factory=list)
    t0: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)  # what the script did when (monotonic)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="wf-cases-", dir=args.workdir))
        self.inbox = self.work / "in"
        self.out = self.work / "out"
        self.prep = self.work / "prep"  # beside IN, on the same filesystem (for mv)
        for d in (self.inbox, self.prep):
            d.mkdir()
        self.topic = f"wf-{uuid.uuid4().hex[:10]}"
        self.known: set[str] = set()
        self.expected_out: set[str] = set()  # every relpath (and earlier version) allowed in OUT
        self.cases: list[Case] = []
        self.rows: list[Row] = []
        self.failures = 0
        self.many_figures: list[str] = []
        self.rss_lines: list[str] = []
        self._cmp_cache: dict[tuple, bool] = {}
        self._up: Program | None = None
        self._rc: Program | None = None

    # --- plumbing -------------------------------------------------------------------------

    @property
    def up(self) -> Program:
        assert self._up is not None
        return self._up

    @property
    def rc(self) -> Program:
        assert self._rc is not None
        return self._rc

    def started(self) -> list[Program]:
        return [p for p in (self._up, self._rc) if p is not None]

    def msi(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "msi_tui", *map(str, args)]

    def start(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.args.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=15)
        except KafkaException:
            raise SystemExit(f"no Kafka broker answers at {self.args.bootstrap}: start one (msi-tui broker "
                             "start) or name one with --bootstrap") from None
        admin.create_topics([NewTopic(self.topic, num_partitions=5)])[self.topic].result(30)
        base = {**os.environ, "PYTHONUNBUFFERED": "1"}
        base.pop("CI", None)
        rc_state, up_state = self.work / "state-reconstruct", self.work / "state-upload"
        rc_state.mkdir()
        up_state.mkdir()
        rc_cmd = self.msi("reconstruct", self.out, "--headless", "--bootstrap", self.args.bootstrap,
                          "--topic", self.topic, "--group-id", self.topic, "--update-seconds", "-1")
        up_cmd = self.msi("upload", self.inbox, "--headless", "--bootstrap", self.args.bootstrap,
                          "--topic", self.topic, "--update-seconds", "-1", *self.args.upload_arg)
        print(f"reconstructor: MSI_TUI_STATE_DIR={rc_state} {' '.join(rc_cmd[1:])}")
        self._rc = Program("reconstructor", rc_cmd, {**base, "MSI_TUI_STATE_DIR": str(rc_state)})
        if self.rc.wait_line("reconstructing files", 120) is None:
            raise RuntimeError(f"the reconstructor did not start: {self.tail(self.rc)}")
        print(f"uploader:      MSI_TUI_STATE_DIR={up_state} {' '.join(up_cmd[1:])}")
        self._up = Program("uploader", up_cmd, {**base, "MSI_TUI_STATE_DIR": str(up_state)})
        if self.up.wait_line("watching ", 120) is None:
            raise RuntimeError(f"the uploader did not start: {self.tail(self.up)}")
        self.up_log = Log(self.up, UPLOADER_LINES, self.known)
        self.rc_log = Log(self.rc, RECONSTRUCTOR_LINES, self.known)
        time.sleep(3.0)  # the consumer group's first assignment
        print(flush=True)

    @staticmethod
    def tail(p: Program, n: int = 10) -> str:
        return " | ".join(line for _, line in p.lines[-n:])

    def both_alive(self) -> bool:
        return self.up.alive() and self.rc.alive()

    def wait_until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.up_log.update()
            self.rc_log.update()
            if done():
                return True
            if time.monotonic() >= deadline or not self.both_alive():
                return False
            time.sleep(0.25)

    def wait_quiet(self, quiet_s: float = 3.0, most_s: float = 60.0) -> None:
        """Until neither program printed anything for quiet_s (late versions, receipts)."""
        deadline = time.monotonic() + most_s
        while time.monotonic() < deadline and self.both_alive():
            last = max([t for t, _ in self.up.lines[-1:]] + [t for t, _ in self.rc.lines[-1:]] + [0.0])
            if time.monotonic() - last >= quiet_s:
                break
            time.sleep(0.25)
        self.up_log.update()
        self.rc_log.update()

    def register(self, case: Case) -> Case:
        for d in case.drops:
            self.known.add(d.shown)
            if d.kind == "arrive":
                self.expected_out.add(d.rel)
        self.cases.append(case)
        return case

    def out_equal(self, rel: str) -> bool:
        src, dst = self.inbox / rel, self.out / rel
        try:
            s1, s2 = src.stat(), dst.stat()
        except OSError:
            return False
        key = (rel, s1.st_size, s1.st_mtime_ns, s2.st_ino, s2.st_size, s2.st_mtime_ns)
        if key not in self._cmp_cache:
            self._cmp_cache[key] = same_bytes(src, dst)
        return self._cmp_cache[key]

    def versions(self, rel: str, listings: dict[str, list[str]] | None = None) -> list[str]:
        """Earlier versions kept beside OUT/rel: relpaths of `name (N).ext`, by N."""
        folder = (self.out / rel).parent
        rx = numbered_pattern(os.path.basename(rel))
        listings = {} if listings is None else listings
        if str(folder) not in listings:
            try:
                listings[str(folder)] = os.listdir(folder)
            except OSError:
                listings[str(folder)] = []
        names = listings[str(folder)]
        hits = sorted((int(m.group(1)), n) for n in names if (m := rx.match(n)))
        base = os.path.dirname(rel)
        return [os.path.join(base, n) if base else n for _, n in hits]

    def file_done(self, d: Drop, receipts: bool = True) -> bool:
        name = d.shown
        up = self.up_log
        if d.kind == "arrive":
            n_up = up.count(name, "uploaded")
            return n_up >= 1 and (not receipts or up.count(name, "verified") >= n_up) and self.out_equal(d.rel)
        if d.kind == "refused":
            return up.count(name, "failed") >= 1
        # deleted: failed, or (unhealthy) sent whole and settled
        n_up = up.count(name, "uploaded")
        return up.count(name, "failed") >= 1 or (n_up >= 1 and up.count(name, "verified") >= n_up)

    def finish(self, case: Case, timeout: float) -> None:
        """Wait for the case's files to arrive (or fail), then for their receipts at the uploader."""
        ok = self.wait_until(lambda: all(self.file_done(d, receipts=False) for d in case.drops), timeout)
        if not ok:
            ended = "" if self.both_alive() else " (a program ended)"
            case.notes.append(f"not settled within {timeout:.0f} s{ended}")
        elif not self.wait_until(lambda: all(self.file_done(d) for d in case.drops), self.args.receipt_wait):
            case.notes.append(f"arrived, but not every 'verified' line came within {self.args.receipt_wait:.0f} s")
        self.wait_quiet()
        # a staged part left behind by an ended upload should go shortly
        self.wait_until(lambda: not staged_parts(self.out), 15)
        self.report(case)

    # --- evaluation -----------------------------------------------------------------------

    def summary_of(self, log: Log, name: str, kinds: list[str]) -> str:
        said = log.about(name)
        parts = []
        for k in kinds:
            n = sum(1 for s in said if s.kind == k)
            if n:
                parts.append(k if n == 1 else f"{k} x{n}")
        failed = [s.detail for s in said if s.kind == "failed"]
        for reason in dict.fromkeys(failed):
            parts.append(f"reason: {reason}")
        return ", ".join(parts) or "nothing"

    def row_for(self, case: Case, d: Drop) -> Row:
        name = d.shown
        up, rc = self.up_log, self.rc_log
        arrived_path = self.out / d.rel
        arrived = arrived_path.exists() or arrived_path.is_symlink()
        versions = self.versions(d.rel)
        why: list[str] = []
        equal = "-"
        if arrived and d.kind == "arrive":
            equal = "yes" if self.out_equal(d.rel) else "NO"
        earlier_txt = []
        for v in versions:
            digest = sha256_of(self.out / v)
            label = d.earlier.get(digest)
            earlier_txt.append(f"{shown_name(os.path.basename(v))} = {label}" if label else
                               f"{shown_name(os.path.basename(v))} = NOT a whole earlier version")
            if label is None:
                why.append(f"{shown_name(v)} holds bytes that are no whole version of the file")
            else:
                self.expected_out.add(v)
        n_up, n_ver = up.count(name, "uploaded"), up.count(name, "verified")
        if d.kind == "arrive":
            if not arrived:
                why.append("did not arrive")
            elif equal != "yes":
                why.append("the file under its name is not the source's final content")
            if n_up < 1:
                why.append("no 'uploaded' line")
            if n_ver < max(1, n_up):
                why.append(f"verified {n_ver} of {n_up} uploads at the uploader")
            if up.count(name, "failed there"):
                why.append("failed at the destination")
        elif d.kind == "refused":
            fails = [s for s in up.about(name) if s.kind == "failed"]
            if not fails:
                why.append("not reported failed at the uploader")
            elif not all(s.detail.strip() for s in fails):
                why.append("failed without a reason")
            if n_up:
                why.append("reported uploaded")
            if arrived or versions:
                why.append("something of it arrived")
        else:  # deleted
            if not up.count(name, "failed"):
                why.append("not reported failed at the uploader")
            if n_up:
                why.append("reported uploaded")
            if arrived or versions:
                why.append("something of it arrived")
        return Row(case.key, name, "yes" if arrived else "no", equal, "; ".join(earlier_txt) or "-",
                   self.summary_of(up, name, ["sending", "changed", "failed", "uploaded", "verified", "failed there"]),
                   self.summary_of(rc, name, ["reconstructed", "duplicate", "earlier kept", "late kept", "withdrawn",
                                              "quarantined", "refused", "abandoned", "clash"]),
                   "ok" if not why else "BAD", why)

    def bulk_row(self, case: Case) -> Row:
        n = len(case.drops)
        arrived = equal = verified = uploaded = failed = rebuilt = 0
        bad: list[str] = []
        extra_versions = 0
        listings: dict[str, list[str]] = {}
        for d in case.drops:
            name = d.shown
            if (self.out / d.rel).exists():
                arrived += 1
                if self.out_equal(d.rel):
                    equal += 1
                elif len(bad) < 5:
                    bad.append(f"{name} differs")
            elif len(bad) < 5:
                bad.append(f"{name} missing")
            extra_versions += len(self.versions(d.rel, listings))
            u = self.up_log.count(name, "uploaded")
            uploaded += u >= 1
            verified += self.up_log.count(name, "verified") >= max(1, u)
            failed += self.up_log.count(name, "failed") >= 1
            rebuilt += self.rc_log.count(name, "reconstructed") >= 1
        why = []
        if arrived < n or equal < n:
            why.append(f"{n - equal} of {n} not arrived whole: {', '.join(bad)}")
        if uploaded < n:
            why.append(f"{n - uploaded} without an 'uploaded' line")
        if verified < n:
            why.append(f"{n - verified} not verified at the uploader")
        if extra_versions:
            why.append(f"{extra_versions} numbered copies (name (N).ext) beside them")
        return Row(case.key, f"{n} files", f"{arrived}/{n}", f"{equal}/{n}", str(extra_versions),
                   f"uploaded {uploaded}, verified {verified}, failed {failed}",
                   f"reconstructed {rebuilt}", "ok" if not why else "BAD", why)

    def report(self, case: Case) -> None:
        rows = [self.bulk_row(case)] if case.bulk else [self.row_for(case, d) for d in case.drops]
        if case.key == "rewritten":
            self._check_mid_send(case, "rewrite", rows)
        if case.key == "deleted":
            self._check_mid_send(case, "unlink", rows)
        left = staged_parts(self.out)
        if left:
            case.notes.append(f"staged parts left in OUT/{STAGING}: {', '.join(left)}")
            rows[0].why.append(f"{len(left)} staged part(s) left over")
            rows[0].verdict = "BAD"
        if not self.both_alive():
            rows[0].why.append("a program ended: " + "; ".join(
                f"{p.name} exit {p.proc.returncode}" for p in (self.up, self.rc) if not p.alive()))
            rows[0].verdict = "BAD"
        self.rows += rows
        bad = [r for r in rows if r.verdict != "ok"]
        self.failures += bool(bad) or any(n.startswith("not settled") for n in case.notes)
        # the case's section
        print(f"== {case.key}: {case.title}")
        print(f"   how: {case.how}")
        for r in rows:
            print(f"   {r.file}: arrived {r.arrived}, = source's final bytes {r.equal}, earlier versions {r.earlier}")
            print(f"      uploader: {r.uploader}")
            print(f"      reconstructor: {r.reconstructor}")
            print(f"      -> {r.verdict}" + (f": {'; '.join(r.why)}" if r.why else ""))
        for note in case.notes:
            print(f"   note: {note}")
        if not case.bulk:
            print("   lines about these names (s after the case began):")
            names = [d.shown for d in case.drops]
            said = []
            for prog, log in (("up", self.up_log), ("rc", self.rc_log)):
                for n in names:
                    said += [(s.t, prog, s.line) for s in log.about(n)]
                said += [(t, prog, line) for t, line in log.other if t >= case.t0 and any(n in line for n in names)]
            for t, prog, line in sorted(said):
                print(f"     {t - case.t0:7.2f}  {prog}  {line}")
        print(flush=True)

    def _check_mid_send(self, case: Case, mark: str, rows: list[Row]) -> None:
        """The rewrite/unlink must have landed while the first send was going on."""
        name = case.drops[0].shown
        at = case.marks.get(mark)
        ends = [self.up_log.first(name, k) for k in ("changed", "failed", "uploaded")]
        first_end = min([s.t for s in ends if s is not None], default=None)
        sending = self.up_log.first(name, "sending")
        if at is None or sending is None:
            case.notes.append(f"the {mark} did not happen (no 'sending' line): the case was not tried")
            rows[0].why.append("not tried mid-send")
            rows[0].verdict = "BAD"
            return
        if first_end is not None and first_end < at:
            case.notes.append(f"the first send ended {at - first_end:.2f} s before the {mark}: not mid-send "
                              "(try a larger --big-mib)")
            rows[0].why.append("not tried mid-send")
            rows[0].verdict = "BAD"
        else:
            case.notes.append(f"{mark} began {at - sending.t:.2f} s after the 'sending' line"
                              + (f", the first send ended {first_end - at:.2f} s after it" if first_end else ""))

    # --- the cases --------------------------------------------------------------------------

    def case_cp(self) -> None:
        tree = self.prep / "cp200"
        drops = []
        for i in range(200):
            rel = f"cp200/d{i % 4}/f{i:03d}.dat"
            (tree / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
            (self.prep / rel).write_bytes(os.urandom(KIB + (i * 331 % 64) * KIB))
            drops.append(Drop(rel, "arrive"))
        case = self.register(Case("cp -r", "200 files copied in with cp -r",
                                  "cp -r prep/cp200 IN/ (4 folders x 50 files, 1-64 KiB)", drops, bulk=True))
        case.t0 = time.monotonic()
        subprocess.run(["cp", "-r", str(tree), str(self.inbox)], check=True)
        self.finish(case, self.args.timeout)

    def case_mv_file(self) -> None:
        write_random(self.prep / "moved-file.bin", MIB)
        case = self.register(Case("mv file", "a file moved in", "1 MiB written beside IN, then `mv` into IN",
                                  [Drop("moved-file.bin", "arrive")]))
        case.t0 = time.monotonic()
        subprocess.run(["mv", str(self.prep / "moved-file.bin"), str(self.inbox)], check=True)
        self.finish(case, self.args.timeout)

    def case_mv_folder(self) -> None:
        folder = self.prep / "moved-folder"
        (folder / "sub").mkdir(parents=True)
        rels = ["moved-folder/a.txt", "moved-folder/b.bin", "moved-folder/sub/c.dat"]
        for i, rel in enumerate(rels):
            write_random(self.prep / rel, (1 + 100 * i) * KIB)
        case = self.register(Case("mv folder", "a folder moved in",
                                  "folder with 3 files (one in a subfolder) made beside IN, then `mv` into IN",
                                  [Drop(r, "arrive") for r in rels]))
        case.t0 = time.monotonic()
        subprocess.run(["mv", str(folder), str(self.inbox)], check=True)
        self.finish(case, self.args.timeout)

    def case_passes(self) -> None:
        rel = "passes.trc"
        passes = [os.urandom(64 * KIB) for _ in range(3)]
        earlier = {hashlib.sha256(passes[0]).hexdigest(): "pass 1",
                   hashlib.sha256(passes[0] + passes[1]).hexdigest(): "passes 1-2"}
        case = self.register(Case("3 passes", "a file written in 3 passes 2 s apart",
                                  "open for append, write 64 KiB, close; 2 s later again; 3 passes",
                                  [Drop(rel, "arrive", earlier)]))
        case.t0 = time.monotonic()
        for i, chunk in enumerate(passes):
            with open(self.inbox / rel, "ab") as f:
                f.write(chunk)
            case.marks[f"pass {i + 1} closed"] = time.monotonic()
            if i < 2:
                time.sleep(2.0)
        self.finish(case, self.args.timeout)

    def _big_then(self, key: str, title: str, action: str) -> None:
        rel = f"{key}.bin"
        size = self.args.big_mib * MIB
        path = self.inbox / rel
        kind = "arrive" if key == "rewritten" else "deleted"
        drop = Drop(rel, kind)
        how = (f"{self.args.big_mib} MiB written into IN; once the uploader prints 'sending {rel}', "
               + ("0.3 s later opened with O_TRUNC and written again with other random bytes (same size)"
                  if key == "rewritten" else "0.3 s later deleted (unlink)"))
        case = self.register(Case(key, title, how, [drop]))
        case.t0 = time.monotonic()
        since = len(self.up.lines)
        first = write_random(path, size)
        drop.earlier[first] = "the first content, whole"
        t_send = self.up.wait_line(f"sending {drop.shown} (", self.args.timeout, since)
        if t_send is not None:
            time.sleep(max(0.0, t_send + 0.3 - time.monotonic()))
            case.marks[action] = time.monotonic()
            if key == "rewritten":
                write_random(path, size)
                case.marks["rewrite closed"] = time.monotonic()
            else:
                os.unlink(path)
        self.finish(case, self.args.timeout)

    def case_rewritten(self) -> None:
        self._big_then("rewritten", "a file truncated and rewritten while it is being sent", "rewrite")

    def case_deleted(self) -> None:
        self._big_then("deleted", "a file deleted while it is being sent", "unlink")

    def case_non_utf8(self) -> None:
        raw = b"caf\xe9.txt"
        rel = os.fsdecode(raw)
        case = self.register(Case("non-UTF-8", "a non-UTF-8 name (bytes b'caf\\xe9.txt')",
                                  "written into IN by its bytes name", [Drop(rel, "arrive")]))
        case.t0 = time.monotonic()
        write_random(os.path.join(os.fsencode(self.inbox), raw), 3 * KIB)
        self.finish(case, self.args.timeout)

    def case_refused(self) -> None:
        rels = ["back\\slash.txt", "C:notes.txt", "tab\tname.txt"]
        case = self.register(Case("refused names", "names with a backslash, a drive letter and a tab",
                                  "written into IN: " + ", ".join(repr(r) for r in rels),
                                  [Drop(r, "refused") for r in rels]))
        case.t0 = time.monotonic()
        for r in rels:
            write_random(self.inbox / r, 2 * KIB)
        self.finish(case, self.args.timeout)

    def case_many(self) -> None:
        n = self.args.small
        rels = [f"many/f{i:05d}.bin" for i in range(n)]
        blobs = [os.urandom(KIB) for _ in range(n)]
        by_mv = self.args.many_by_mv
        how = (f"{n} files of 1 KiB written into a folder beside IN, then the folder moved in with one `mv`"
               if by_mv else f"{n} files of 1 KiB written straight into IN/many/ (open, write, close, one after "
               "another as fast as Python goes)")
        case = self.register(Case(f"{n} x 1 KiB", f"{n} files of 1 KiB at once", how,
                                  [Drop(r, "arrive") for r in rels], bulk=True))
        sampled = {self.up.name: 0, self.rc.name: 0}
        hwm_before = {p.name: p.status_kb().get("VmHWM", 0) for p in (self.up, self.rc)}
        halt = threading.Event()

        def sample() -> None:
            while not halt.wait(0.25):
                for p in (self.up, self.rc):
                    sampled[p.name] = max(sampled[p.name], p.status_kb().get("VmRSS", 0))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        base = self.prep if by_mv else self.inbox
        (base / "many").mkdir()
        case.t0 = t0 = time.monotonic()
        for rel, blob in zip(rels, blobs, strict=True):
            with open(base / rel, "wb") as f:
                f.write(blob)
        if by_mv:
            subprocess.run(["mv", str(self.prep / "many"), str(self.inbox)], check=True)
        t_written = time.monotonic()
        names = {d.shown for d in case.drops}
        ok = self.wait_until(lambda: all(self.rc_log.count(x, "reconstructed") for x in names)
                             and all(self.up_log.count(x, "verified") for x in names), self.args.timeout_many)
        halt.set()
        sampler.join(2)
        arrivals = [s.t for x in names if (s := self.rc_log.first(x, "reconstructed")) is not None]
        receipts = [s.t for x in names if (s := self.up_log.first(x, "verified")) is not None]
        last_rc = max(arrivals, default=None)
        last_ver = max(receipts, default=None)
        n_rc = sum(1 for x in names if self.rc_log.count(x, "reconstructed"))
        fig = [f"{n} x 1 KiB ({'moved in' if by_mv else 'written straight in'}): writing "
               f"{'and moving them in ' if by_mv else ''}took {t_written - t0:.2f} s",
               "first write -> last file arrived in OUT (its 'reconstructed' line): "
               + (f"{last_rc - t0:.2f} s" if last_rc else "-") + f" ({n_rc}/{n} arrived)",
               "first write -> last 'verified' line at the uploader: "
               + (f"{last_ver - t0:.2f} s" if last_ver else "-")]
        if not ok:
            fig.append(f"not complete within {self.args.timeout_many:.0f} s")
        for p in (self.up, self.rc):
            hwm = p.status_kb().get("VmHWM", 0)
            fig.append(f"{p.name}: peak RSS during the {n} files (sampled VmRSS) {sampled[p.name] / 1024:.0f} MiB; "
                       f"VmHWM before them {hwm_before[p.name] / 1024:.0f} MiB, after {hwm / 1024:.0f} MiB")
        self.many_figures = fig
        if not ok:
            case.notes.append(f"not settled within {self.args.timeout_many:.0f} s")
        self.wait_quiet()
        self.report(case)
        for line in fig:
            print("   " + line)
        print(flush=True)

    # --- the end ----------------------------------------------------------------------------

    def stop(self) -> None:
        for p in self.started():
            if p.alive():
                p.send("check")
        time.sleep(1.5)
        for p in self.started():
            check = [line for _, line in p.lines if line.startswith(("files enqueued", "messages read"))]
            hwm = p.status_kb().get("VmHWM")
            self.rss_lines.append(f"{p.name}: peak RSS over the whole run (VmHWM) "
                                  + (f"{hwm / 1024:.0f} MiB" if hwm else "- (not running)")
                                  + (f"; check: {check[-1]}" if check else ""))
        # `msi-tui upload` exits 1 when files failed: the refused names and the deleted file do
        expected = {"uploader": 1 if any(d.kind != "arrive" for c in self.cases for d in c.drops) else 0,
                    "reconstructor": 0}
        for p in self.started():  # the uploader first: it delivers what it holds
            code = p.stop()
            self.rss_lines.append(f"{p.name} exit status {code} (expected {expected[p.name]})")
            if code != expected[p.name]:
                self.failures += 1

    def unexpected(self) -> list[str]:
        found = files_under(self.out)
        return sorted(shown_name(f) for f in found - self.expected_out)

    def drop_topics(self) -> None:
        try:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.args.bootstrap, "log_level": 3})
            mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.topic)]
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                fut.result(60)
        except Exception as exc:  # best effort
            print(f"(could not delete topic {self.topic}: {exc})")


def logged_errors(path: Path) -> list[str]:
    """ERROR/CRITICAL records and their tracebacks from a program's log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="backslashreplace")
    except OSError:
        return []
    out: list[str] = []
    keep = False
    for line in text.splitlines():
        if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line):
            keep = " ERROR " in line or " CRITICAL " in line
        if keep:
            out.append(line)
    return out


def table(rows: list[Row]) -> str:
    header = ["case", "file", "arrived", "= final", "earlier versions in OUT", "uploader said", "reconstructor said",
              "verdict"]
    def cut(text: str, most: int = 64) -> str:  # (the case sections above give the whole text)
        return text if len(text) <= most else text[:most - 3] + "..."

    cells = [[r.case, r.file, r.arrived, r.equal, cut(r.earlier), cut(r.uploader), cut(r.reconstructor), r.verdict]
             for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--bootstrap", default="127.0.0.1:9092", help="the broker (default %(default)s)")
    p.add_argument("--small", type=int, default=10_000,
                   help="number of 1 KiB files of the last case (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="leave out the many small files")
    p.add_argument("--many-by-mv", action="store_true",
                   help="write the small files into a folder beside IN and move it in (default: written straight in)")
    p.add_argument("--big-mib", type=int, default=200,
                   help="size of the rewritten and the deleted file, MiB (default %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to each case (default %(default)s)")
    p.add_argument("--receipt-wait", type=float, default=30.0,
                   help="seconds allowed, once a case's files arrived, for the uploader's 'verified' lines "
                        "(default %(default)s)")
    p.add_argument("--timeout-many", type=float, default=1200.0,
                   help="seconds allowed to the many small files (default %(default)s)")
    p.add_argument("--upload-arg", action="append", default=[],
                   help="one more argument for `msi-tui upload` (repeatable), e.g. --upload-arg=--settle-seconds=0")
    p.add_argument("--workdir", type=Path, default=None, help="where the run's folder is made (default: the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder (IN, OUT, states) and the topic")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = Run(args)
    import msi_tui

    print(f"watch-folder cases: broker {args.bootstrap}, topic {run.topic}, msi-tui from "
          f"{Path(msi_tui.__file__).parent}, work folder {run.work}")
    code = 0
    try:
        run.start()
        cases = [run.case_cp, run.case_mv_file, run.case_mv_folder, run.case_passes, run.case_rewritten,
                 run.case_deleted, run.case_non_utf8, run.case_refused]
        if not args.quick:
            cases.append(run.case_many)
        for case in cases:
            case()
            if not run.both_alive():
                print("a program ended; no further cases")
                run.failures += 1
                break
    except Exception as exc:  # say it, stop both, exit 2
        print(f"run failed: {exc!r}")
        code = 2
    finally:
        run.stop()
    extra = run.unexpected() if run.out.exists() else []
    print("== summary")
    print(table(run.rows))
    print()
    if extra:
        print(f"files in OUT that were not dropped: {', '.join(extra[:20])}" + (" ..." if len(extra) > 20 else ""))
        run.failures += 1
    for line in run.many_figures + run.rss_lines:
        print(line)
    for prog, log in (("uploader", getattr(run, "up_log", None)), ("reconstructor", getattr(run, "rc_log", None))):
        if log is None:
            continue
        log.update()
        loud = [line for _, line in log.other
                if line.startswith(("ERROR", "WARNING", "stderr:")) or "Traceback" in line]
        if loud:
            print(f"{prog}: other warnings and errors ({len(loud)}):")
            for line in loud[:30]:
                print(f"   {line}")
    for prog in ("upload", "reconstruct"):
        logged = logged_errors(run.work / f"state-{prog}" / "msi-tui.log")
        if logged:
            print(f"errors in the {prog}er's log file (MSI_TUI_STATE_DIR/msi-tui.log), {len(logged)} lines:")
            for line in logged[:40]:
                print(f"   {line}")
    bad = [r for r in run.rows if r.verdict != "ok"]
    print(f"\n{len(run.rows) - len(bad)} of {len(run.rows)} rows healthy"
          + (f"; BAD: {', '.join(f'{r.case}/{r.file}' for r in bad)}" if bad else ""))
    if args.keep:
        print(f"kept {run.work} and topic {run.topic}")
    else:
        run.drop_topics()
        shutil.rmtree(run.work, ignore_errors=True)
    if code:
        return code
    return 1 if run.failures or bad else 0


if __name__ == "__main__":
    sys.exit(main())
