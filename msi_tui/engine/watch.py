"""Watching a folder tree and deciding when a file is complete enough to send.

Where the OS tells us (inotify on Linux), a file is ready shortly after the writer closes it
(or moves it in). Elsewhere, or with `use_polling` for network shares where events do not
arrive, a file is ready once its size and mtime stayed unchanged for a quiet period. A
periodic rescan catches anything the event stream dropped.
"""

from __future__ import annotations

import fnmatch
import os
import queue
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from msi_tui.engine.events import Notice, Sink

SKIPPED_BY_DEFAULT = ("~$*", "*.tmp", "*.part", "*.partial", "*.swp", "*.crdownload")
CLOSE_SETTLE_S = 0.3  # a writer that re-opens right after closing gets this long to do so
TICK_S = 0.2
RELEASE_EVERY = 50  # files scanned between looks for those ready to go (see _scan)
# The events _Funnel uses; inotify is asked for these alone. Without the filter every file
# the uploader reads came back as an open and a close-without-write event, each built and
# dispatched by watchdog's threads: 0.3-0.4 s of CPU per 1,000 files sent, a fifth to a
# quarter of the uploader's own.
_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]


@dataclass(frozen=True)
class FileFilter:
    """Which relative paths are uploaded: hidden and temporary files are skipped by default."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False

    def accepts(self, relpath: str) -> bool:
        parts = relpath.split("/")
        name = parts[-1]
        if not self.include_hidden and any(p.startswith(".") for p in parts):
            return False
        if any(fnmatch.fnmatch(name, pat) for pat in SKIPPED_BY_DEFAULT):
            return False
        if self.include and not any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in self.exclude)


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time the size or mtime last changed
    closed: bool  # the writer closed it (or moved it in) since its last change
    # Judged by the quiet period: found by a scan, or announced only by a "created" event
    # (a file moved in from outside the tree arrives so, and no close event follows). The
    # first write event switches it to waiting for the writer's close.
    by_quiet: bool


ReadyCallback = Callable[[Path, str, int, int], None]  # path, relpath, size, mtime_ns
CrashCallback = Callable[[str, BaseException], None]  # thread name, what ended it


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


class _Funnel(FileSystemEventHandler):
    """Moves watchdog's events onto our queue; watchdog's thread does nothing else."""

    def __init__(self, events: "queue.SimpleQueue[tuple[str, str]]") -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type != "moved":
            if event.event_type == "created":
                self.events.put(("rescan", os.fsdecode(event.src_path)))
            return
        if event.event_type == "moved":
            self.events.put(("moved", os.fsdecode(event.dest_path)))
        elif event.event_type in ("created", "modified", "closed"):
            self.events.put((event.event_type, os.fsdecode(event.src_path)))


class FolderWatcher:
    """Calls `on_ready` once for each version of each accepted file under `folder`.

    `is_known(relpath, size, mtime_ns)` lets the uploader skip versions already sent (the
    registry). Runs one thread plus watchdog's; `stop()` ends both.
    """

    def __init__(
        self,
        folder: Path,
        on_ready: ReadyCallback,
        sink: Sink,
        *,
        file_filter: FileFilter = FileFilter(),
        use_polling: bool = False,
        quiet_seconds: float = 3.0,
        rescan_seconds: float = 60.0,
        is_known: Callable[[str, int, int], bool] = lambda *_: False,
        on_crash: CrashCallback | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.on_ready = on_ready
        self.sink = sink
        self.filter = file_filter
        self.use_polling = use_polling or not sys.platform.startswith("linux")
        self.quiet_seconds = quiet_seconds
        self.rescan_seconds = rescan_seconds
        self.is_known = is_known
        self.on_crash = on_crash or self._report_crash
        self._events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._candidates: dict[str, _Candidate] = {}
        self._sent: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="msi-watch", daemon=True)
        self._observer = PollingObserver(timeout=1) if self.use_polling else Observer()

    def start(self) -> None:
        self._observer.schedule(_Funnel(self._events), str(self.folder), recursive=True, event_filter=_EVENTS)
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()

    def recheck(self, relpath: str) -> None:
        """The uploader saw this file change while sending: judge its readiness afresh."""
        self._sent.pop(relpath, None)
        self._events.put(("modified", str(self.folder / relpath)))

    # --- the watcher thread -------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # a watcher gone silently would leave every later file unsent, unseen
            self.on_crash(self._thread.name, exc)

    def _report_crash(self, name: str, exc: BaseException) -> None:
        self.sink(Notice(level="error", message=f"thread {name} died ({exc!r}): no new file is picked up",
                         at=time.time()))

    def _file_failed(self, rel: str, exc: Exception) -> None:
        """One file's trouble is told and ends there: the watcher goes on with the others."""
        self.sink(Notice(level="error", message=f"{shown_name(rel)}: {exc}", at=time.time()))

    def _observe_safely(self, path: Path, kind: str) -> None:
        try:
            self._observe(path, kind)
        except Exception as exc:
            self._file_failed(str(path), exc)

    def _run(self) -> None:
        self._scan()
        self._release_ready()  # files that were already complete go at once, not after a tick
        next_scan = time.monotonic() + self.rescan_seconds
        while not self._stop.is_set():
            deadline = time.monotonic() + TICK_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    kind, path = self._events.get(timeout=left)
                except queue.Empty:
                    break
                if kind == "rescan":
                    self._scan(Path(path))
                else:
                    self._observe_safely(Path(path), kind)
            self._release_ready()
            if time.monotonic() >= next_scan:
                self._scan()
                next_scan = time.monotonic() + self.rescan_seconds

    def _relpath(self, path: Path) -> str | None:
        try:
            rel = path.relative_to(self.folder).as_posix()
        except ValueError:
            return None
        return rel if self.filter.accepts(rel) else None

    def _scan(self, top: Path | None = None) -> None:
        """Consider every file under `top` (the whole folder by default), letting go of
        those ready every RELEASE_EVERY: the first files of a full folder are on their way
        while the rest is scanned."""
        seen = 0
        for root, dirs, files in os.walk(top or self.folder):
            if not self.filter.include_hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                self._observe_safely(Path(root) / name, "scan")
                seen += 1
                if seen % RELEASE_EVERY == 0:
                    self._release_ready()

    def _observe(self, path: Path, kind: str) -> None:
        """Update a file's candidacy; `kind` is scan, created, modified, closed or moved."""
        from_scan = kind == "scan"
        closed = kind in ("closed", "moved")
        rel = self._relpath(path)
        if rel is None:
            return
        try:
            st = path.lstat()
        except OSError:
            self._candidates.pop(rel, None)  # deleted or unreadable: forget until it reappears
            return
        if not path.is_file() or path.is_symlink():
            return
        key = (st.st_size, st.st_mtime_ns)
        if self._sent.get(rel) == key:
            return
        now = time.monotonic()
        old = self._candidates.get(rel)
        if old is None:
            # A file found by a scan (at start-up, or a rescan) was closed before we watched:
            # no close event will come, so the quiet period judges it, counted from its mtime.
            changed_at = now - max(0.0, time.time() - st.st_mtime) if from_scan else now
            self._candidates[rel] = _Candidate(st.st_size, st.st_mtime_ns, changed_at, closed, kind in ("scan", "created"))
            return
        if kind == "modified":
            old.by_quiet = False  # someone writes to it: wait for the writer's close
        if (old.size, old.mtime_ns) != key:
            old.size, old.mtime_ns, old.changed_at = st.st_size, st.st_mtime_ns, now
            old.closed = closed
        elif closed:
            old.closed = True

    def _release_ready(self) -> None:
        now = time.monotonic()
        for rel, cand in list(self._candidates.items()):
            waited = now - cand.changed_at
            if self.use_polling:
                due = waited >= self.quiet_seconds
            else:
                due = (cand.closed and waited >= CLOSE_SETTLE_S) or (cand.by_quiet and waited >= self.quiet_seconds)
            if not due:
                continue
            path = self.folder / rel
            try:
                st = path.lstat()
            except OSError:
                del self._candidates[rel]
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns, cand.changed_at, cand.closed = st.st_size, st.st_mtime_ns, now, False
                continue
            del self._candidates[rel]
            self._sent[rel] = (st.st_size, st.st_mtime_ns)
            try:  # the watcher must outlive any one file's trouble
                if not self.is_known(rel, st.st_size, st.st_mtime_ns):
                    self.on_ready(path, rel, st.st_size, st.st_mtime_ns)
            except Exception as exc:
                self._file_failed(rel, exc)
