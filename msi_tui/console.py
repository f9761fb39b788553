"""The headless front end: one line per fact, the seed programs' '.', check and quit.

Used for services and scripts (and whenever there is no terminal for the app). Typed
commands are read from standard input when there is one; signals take the same path as
`quit`: the first asks for a graceful stop, the second forces it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from msi_tui.engine.events import Event, FileQueued
from msi_tui.engine.reconstruct import Reconstructor
from msi_tui.engine.service import ReconstructService, UploadService
from msi_tui.engine.upload import Uploader
from msi_tui.formatting import describe_event, exit_summary, human_size, in_flight_lines, plural

DRAIN_REPORT_S = 2.0


def describe(event: Event) -> str | None:
    """The console line for an event (the app's log wording), or None for queueing."""
    if isinstance(event, FileQueued):
        return None  # "sending" follows at once; the seed printed one line per file too
    level, message = describe_event(event)
    return f"{level.upper()}: {message}" if level in ("warning", "error") else message


def upload_counts(uploader: UploadService) -> str:
    s = uploader.snapshot()
    return (
        f"files enqueued {s.files_queued}, in progress {s.files_in_progress}, done {s.files_done}, "
        f"failed {s.files_failed}; chunks waiting for delivery {s.pending_deliveries}; Kafka {s.connection}; "
        + (f"verified at destination {s.files_verified}, awaiting receipt {s.awaiting_receipt}, "
           f"failed there {s.files_failed_there}" if s.receipts == "following" else f"receipts: {s.receipts}")
    )


def reconstruct_counts(reconstructor: ReconstructService) -> str:
    s = reconstructor.snapshot()
    lag = "unknown" if s.lag is None else str(s.lag)
    return (
        f"messages read {s.messages_read}, files completed {s.files_completed}, in progress "
        f"{s.files_in_progress}, quarantined {s.files_quarantined}, records refused {s.records_rejected}; "
        f"lag {lag}; Kafka {s.connection}"
    )


def log_file() -> Path | None:
    """Where the `msi_tui` loggers write (the CLI sets it up), for the exit summary."""
    for handler in logging.getLogger("msi_tui").handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def check_lines(service: Uploader | Reconstructor) -> list[str]:
    """`check`: the counts, then each file in flight with how far it got."""
    counts = upload_counts(service) if isinstance(service, Uploader) else reconstruct_counts(service)
    return [counts, *in_flight_lines(service.snapshot().files, time.time())]


class Console:
    """Prints events and runs one service until it stops."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._quits = 0
        self._bar_drawn = False  # a progress bar occupies the current terminal line

    def say(self, line: str) -> None:
        with self._lock:
            if self._bar_drawn:
                self.out.write("\r\x1b[K")  # the bar is redrawn below the line
                self._bar_drawn = False
            self.out.write(line + "\n")
            self.out.flush()

    def sink(self, event: Event) -> None:
        line = describe(event)
        if line is not None:
            self.say(line)

    def run(self, service: Uploader | Reconstructor, update_seconds: float, until_idle: bool = False) -> None:
        """Run a started service until quit (typed or signalled), or, with `until_idle`,
        until an uploader has nothing left to send."""
        counts = lambda: "\n".join(check_lines(service))
        self._install_signals(service)
        if not until_idle:
            self._read_commands(service, counts)
        next_dot = time.monotonic() + update_seconds if update_seconds > 0 else float("inf")
        next_drain = 0.0
        bar = until_idle and isinstance(service, Uploader) and self.out.isatty()
        started = time.monotonic()
        while not service.wait_stopped(0.2):
            now = time.monotonic()
            if bar and isinstance(service, Uploader):
                self._progress_bar(service, now - started)
            if until_idle and isinstance(service, Uploader) and not self._quits and service.idle():
                service.request_stop()
            if now >= next_dot:
                self.say(".")
                next_dot = now + update_seconds
            if isinstance(service, Uploader) and self._quits and now >= next_drain:
                pending = service.snapshot().pending_deliveries
                if pending:
                    self.say(f"waiting for {plural(pending, 'chunk')} to be delivered (quit again to give up)")
                next_drain = now + DRAIN_REPORT_S
        if bar and isinstance(service, Uploader):
            self._progress_bar(service, time.monotonic() - started)
            with self._lock:
                self.out.write("\n")
                self._bar_drawn = False
        if not until_idle:  # (one file given by hand: its own line says how it went)
            self.summary(service)

    def summary(self, service: Uploader | Reconstructor) -> None:
        """The exit summary: done, failed, each unfinished file and how far it got, the log."""
        if isinstance(service, Uploader):
            lines = exit_summary(service.snapshot(), None, log_file())
        else:
            lines = exit_summary(None, service.snapshot(), log_file(), group=service.group_id)
        for line in lines:
            self.say(line)

    def _progress_bar(self, uploader: Uploader, elapsed: float) -> None:
        """One redrawn line on a terminal: a bar, the percentage and the rate."""
        snap = uploader.snapshot()
        done = sum(f.chunks_done for f in snap.files)
        total = sum(f.chunks_total for f in snap.files) or 1
        fraction = min(1.0, done / total)
        width = 30
        filled = int(fraction * width)
        rate = snap.bytes_delivered / elapsed if elapsed > 0 else 0.0
        line = f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}  {human_size(rate)}/s"
        with self._lock:
            self.out.write("\r" + line)
            self.out.flush()
            self._bar_drawn = True

    def quit(self, service: Uploader | Reconstructor) -> None:
        self._quits += 1
        if self._quits == 1:
            if isinstance(service, Uploader):
                self.say("quitting: delivering every enqueued chunk first")
            else:
                self.say("quitting: committing and leaving the group")
            service.request_stop()
        else:
            self.say("quitting now, without waiting")
            service.force_stop()

    def _install_signals(self, service: Uploader | Reconstructor) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        handler = lambda *_: self.quit(service)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def _read_commands(self, service: Uploader | Reconstructor, counts) -> None:
        stdin = sys.stdin
        if stdin is None or stdin.closed:
            return

        def loop() -> None:
            for raw in stdin:  # ends quietly at EOF (a service with no input)
                command = raw.strip().lower()
                if command in ("check", "c"):
                    self.say(counts())
                elif command in ("quit", "q"):
                    self.quit(service)
                elif command == "pause":
                    service.pause()
                    self.say("paused: type resume to go on")
                elif command == "resume":
                    service.resume()
                    self.say("resumed")
                elif command in ("help", "h", "?"):
                    self.say("commands: check (c) prints the counts, pause, resume, quit (q) stops gracefully")
                elif command:
                    self.say(f"unknown command {command!r}: type check, pause, resume, quit or help")

        threading.Thread(target=loop, name="msi-stdin", daemon=True).start()
