"""Watching a folder tree and deciding when a file is complete enough to send.

Where the OS tells us (inotify on Linux), a file is ready once its writer closed it (or
moved it in) and left it alone for the settle window: a writer that opens it again within
the window (another pass) is waited for. Elsewhere (Windows, macOS, MSI_TUI_PORTABLE set:
see msi_tui.engine.platform_caps), with `use_polling` for network shares where events do
not arrive, or when inotify is refused (its watch limit reached), watchdog's portable
PollingObserver finds files and one is ready once its size and mtime stayed unchanged for a
quiet period. A periodic rescan catches anything the event stream dropped. The watcher
sleeps until the next file is due or an event comes, never on a fixed tick.

Folders are reported too (an empty one is recreated at the destination), and a folder that
cannot be read is reported once, with the reason, rather than skipped in silence.
"""

from __future__ import annotations

import fnmatch
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from msi_tui.engine.events import Notice, Sink
from msi_tui.engine.platform_caps import caps
from msi_tui.engine.wire import shown_name

SKIPPED_BY_DEFAULT = ("~$*", "*.tmp", "*.part", "*.partial", "*.swp", "*.crdownload")
DEFAULT_SETTLE_S = 0.5  # see README: "When a file is sent"
IDLE_WAIT_S = 1.0  # the longest sleep with nothing due (stop() is seen within it)
POLL_EVERY_S = 1.0  # how often the PollingObserver compares the tree with its last look
RELEASE_EVERY = 50  # files scanned between looks for those ready to go (see _scan)
# The events _Funnel uses; inotify is asked for these alone. Without the filter every file
# the uploader reads came back as an open and a close-without-write event, each built and
# dispatched by watchdog's threads, on CPU the uploader needs for sending.
_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent, DirCreatedEvent, DirMovedEvent]


@dataclass(frozen=True)
class FileFilter:
    """Which relative paths are uploaded: hidden and temporary files are skipped by default."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False

    def accepts_folder(self, relpath: str) -> bool:
        """Folders are recreated unless hidden or excluded (--include chooses files only)."""
        if not self.include_hidden and any(p.startswith(".") for p in relpath.split("/")):
            return False
        name = relpath.rsplit("/", 1)[-1]
        return not any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in self.exclude)

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
FolderCallback = Callable[[str, int], None]  # relpath, mtime_ns
UnreadableCallback = Callable[[str, str], None]  # relpath of a folder, why it cannot be read
CrashCallback = Callable[[str, BaseException], None]  # thread name, what ended it


def _polling_observer() -> BaseObserver:
    """Portable: compares snapshots of the tree (os.scandir and stat), on any system."""
    return PollingObserver(timeout=POLL_EVERY_S)


def _inotify_observer() -> BaseObserver:
    """Linux: inotify, the one observer that reports a writer's close (only asked for when
    caps.inotify, which loaded this module already)."""
    from watchdog.observers.inotify import InotifyObserver

    return InotifyObserver()


class _Funnel(FileSystemEventHandler):
    """Moves watchdog's events onto our queue; watchdog's thread does nothing else."""

    def __init__(self, events: queue.SimpleQueue[tuple[str, str]]) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            if event.event_type == "created":
                self.events.put(("rescan", os.fsdecode(event.src_path)))
            elif event.event_type == "moved":
                self.events.put(("rescan", os.fsdecode(event.dest_path)))
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
        settle_seconds: float = DEFAULT_SETTLE_S,
        rescan_seconds: float = 60.0,
        is_known: Callable[[str, int, int], bool] = lambda *_: False,
        on_folder: FolderCallback | None = None,
        on_unreadable: UnreadableCallback | None = None,
        on_crash: CrashCallback | None = None,
    ) -> None:
        self.folder = folder.resolve()
        self.on_ready = on_ready
        self.sink = sink
        self.filter = file_filter
        self.use_polling = use_polling or not caps.inotify
        self.quiet_seconds = quiet_seconds
        self.settle_seconds = settle_seconds
        self.rescan_seconds = rescan_seconds
        self.is_known = is_known
        self.on_folder = on_folder
        self.on_unreadable = on_unreadable or self._report_unreadable
        self.on_crash = on_crash or self._report_crash
        self._folders: set[str] = set()  # folders reported (relpaths)
        self._unreadable: set[str] = set()  # folders reported as unreadable, until readable again
        self._events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._candidates: dict[str, _Candidate] = {}
        self._sent: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="msi-watch", daemon=True)
        self._observer = _polling_observer() if self.use_polling else _inotify_observer()

    def start(self) -> None:
        try:
            self._start_observer()
        except OSError as exc:
            if self.use_polling:
                raise
            # inotify refused: its per-user watch or instance limit reached, most likely
            # (fs.inotify.max_user_watches). The portable way works all the same.
            self.use_polling = True
            self._observer = _polling_observer()
            self._start_observer()
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"cannot watch {self.folder} with inotify ({exc.strerror or exc}): looking for changes every "
                f"{POLL_EVERY_S:g} s instead, a file goes once unchanged for {self.quiet_seconds:g} s")))
        self._thread.start()

    def _start_observer(self) -> None:
        self._observer.schedule(_Funnel(self._events), str(self.folder), recursive=True, event_filter=_EVENTS)
        self._observer.start()

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

    def _report_unreadable(self, rel: str, why: str) -> None:
        self.sink(Notice(level="error", message=f"cannot read folder {shown_name(rel)}: {why}; its files are not sent",
                         at=time.time()))

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
        next_scan = time.monotonic() + self.rescan_seconds
        while not self._stop.is_set():
            due = self._release_ready()
            wait = min(due, next_scan, time.monotonic() + IDLE_WAIT_S) - time.monotonic()
            try:
                kind, path = self._events.get(timeout=max(0.0, wait))
            except queue.Empty:
                pass
            else:
                if kind == "rescan":
                    self._scan(Path(path))
                else:
                    self._observe_safely(Path(path), kind)
            if time.monotonic() >= next_scan:
                self._scan()
                next_scan = time.monotonic() + self.rescan_seconds

    def _relpath(self, path: Path, folder: bool = False) -> str | None:
        try:
            rel = path.relative_to(self.folder).as_posix()
        except ValueError:
            return None
        if rel == ".":
            return "" if folder else None
        accepted = self.filter.accepts_folder(rel) if folder else self.filter.accepts(rel)
        return rel if accepted else None

    def _scan(self, top: Path | None = None) -> None:
        """Consider every file under `top` (the whole folder by default), letting go of
        those ready every RELEASE_EVERY: the first files of a full folder are on their way
        while the rest is scanned."""
        seen = 0
        failed: set[str] = set()
        top = top or self.folder
        self._folder_found(top)
        for root, dirs, files in os.walk(top, onerror=lambda exc: self._unreadable_found(exc, failed)):
            if not self.filter.include_hidden:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in dirs:
                self._folder_found(Path(root) / name)
            for name in files:
                self._observe_safely(Path(root) / name, "scan")
                seen += 1
                if seen % RELEASE_EVERY == 0:
                    self._release_ready()
        if top == self.folder:  # a whole scan: folders readable again may fail (and be told) anew
            self._unreadable &= failed

    def _folder_found(self, path: Path) -> None:
        """Report each accepted folder once (it may be empty: the far side recreates it)."""
        rel = self._relpath(path, folder=True)
        if not rel or rel in self._folders or self.on_folder is None:
            return
        try:
            st = path.lstat()
        except OSError:
            return
        if not path.is_dir() or path.is_symlink():
            return
        self._folders.add(rel)
        try:
            self.on_folder(rel, st.st_mtime_ns)
        except Exception as exc:
            self._file_failed(rel, exc)

    def _unreadable_found(self, exc: OSError, failed: set[str]) -> None:
        """os.walk could not list a folder: said once (until it can be read again)."""
        rel = self._relpath(Path(exc.filename), folder=True) if exc.filename else None
        if rel is None or isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return  # (gone meanwhile: nothing to send)
        failed.add(rel)
        if rel not in self._unreadable:
            self._unreadable.add(rel)
            self.on_unreadable(rel or ".", exc.strerror or str(exc))

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
            by_quiet = kind in ("scan", "created")
            self._candidates[rel] = _Candidate(st.st_size, st.st_mtime_ns, changed_at, closed, by_quiet)
            return
        if kind == "modified":
            old.by_quiet = False  # someone writes to it: wait for the writer's close
        if (old.size, old.mtime_ns) != key:
            old.size, old.mtime_ns, old.changed_at = st.st_size, st.st_mtime_ns, now
            old.closed = closed
        elif closed:
            old.closed = True

    def _due_at(self, cand: _Candidate) -> float:
        """When a candidate unchanged since `changed_at` becomes ready (monotonic time)."""
        if self.use_polling:
            return cand.changed_at + self.quiet_seconds
        due = cand.changed_at + self.settle_seconds if cand.closed else math.inf  # (open: its close decides)
        return min(due, cand.changed_at + self.quiet_seconds) if cand.by_quiet else due

    def _release_ready(self) -> float:
        """Let go of the candidates that are ready; returns when the next one is due."""
        now = time.monotonic()
        next_due = math.inf
        for rel, cand in list(self._candidates.items()):
            due = self._due_at(cand)
            if due > now:
                next_due = min(next_due, due)
                continue
            path = self.folder / rel
            try:
                st = path.lstat()
            except OSError:
                del self._candidates[rel]
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                cand.size, cand.mtime_ns, cand.changed_at, cand.closed = st.st_size, st.st_mtime_ns, now, False
                next_due = min(next_due, self._due_at(cand))
                continue
            del self._candidates[rel]
            self._sent[rel] = (st.st_size, st.st_mtime_ns)
            try:  # the watcher must outlive any one file's trouble
                if not self.is_known(rel, st.st_size, st.st_mtime_ns):
                    self.on_ready(path, rel, st.st_size, st.st_mtime_ns)
            except Exception as exc:
                self._file_failed(rel, exc)
        return next_due
