"""Text for people, shared by the console and the app (no Textual, no Rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from msi_tui.engine.events import (
    Event,
    FileChangedDuringUpload,
    FileFailedThere,
    FileKeptBoth,
    FileQuarantined,
    FileQueued,
    FileReconstructed,
    FileUploaded,
    FileUploadFailed,
    FileUploadStarted,
    FileVerified,
    Notice,
    RecordRejected,
    UploadNotRebuilt,
)
from msi_tui.engine.stats import FileProgress, ReconstructSnapshot, UploadSnapshot

LogLevel = Literal["info", "success", "warning", "error"]


def plural(n: int, word: str) -> str:
    """'1 chunk', '3 chunks'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_size(n: int | float) -> str:
    """Bytes as a short decimal figure (1 kB = 1000 B), at most 8 characters: 0 B, 980 B,
    1.20 kB, 45.0 MB, 1.07 GB; 999,999,999 B is 1.00 GB, not 1000.0 MB."""
    value = float(n)
    if abs(value) < 1000:
        return f"{int(value)} B"
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if abs(value) < 9.995:
            return f"{value:.2f} {unit}"
        if abs(value) < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def human_rate(bytes_per_second: float | None) -> str:
    """A throughput in MB/s (the unit operators compare against their instrument)."""
    if bytes_per_second is None:
        return "– MB/s"
    return f"{bytes_per_second / 1e6:.1f} MB/s"


def describe_event(event: Event) -> tuple[LogLevel, str]:
    """The log level and one-line message for an engine event."""
    match event:
        case FileQueued(path=path, size=size):
            return "info", f"queued {path} ({human_size(size)})"
        case FileUploadStarted(path=path, size=size, chunks=chunks):
            return "info", f"sending {path} ({human_size(size)}, {plural(chunks, 'chunk')})"
        case FileUploaded(path=path, size=size, seconds=seconds):
            rate = size / seconds if seconds > 0 else None
            return "success", (
                f"uploaded {path} ({human_size(size)} in {seconds:.1f} s, {human_rate(rate)})"
            )
        case FileUploadFailed(path=path, reason=reason):
            return "error", f"upload failed: {path}: {reason}"
        case FileChangedDuringUpload(path=path):
            return "warning", f"{path} changed while sending; it will be sent again"
        case FileReconstructed(path=path, size=size, duplicate=True):
            return "info", f"duplicate of {path} ignored (already complete)"
        case FileReconstructed(path=path, size=size, seconds=seconds):
            return "success", f"reconstructed {path} ({human_size(size)}, verified, {seconds:.1f} s)"
        case FileQuarantined(path=path, reason=reason, quarantine_path=qpath):
            return "error", f"quarantined {path}: {reason} (kept in {qpath})"
        case UploadNotRebuilt(path=path, outcome="withdrawn", reason=reason):
            return "info", f"{path} withdrawn by its uploader ({reason})"
        case UploadNotRebuilt(path=path, outcome=outcome, reason=reason):
            return "error", f"{outcome} {path}: {reason}"
        case RecordRejected(partition=partition, offset=offset, reason=reason):
            return "warning", f"rejected record p{partition}@{offset}: {reason}"
        case FileVerified(path=path, host=host, output=output, saved_as=saved_as, cleanup=cleanup):
            where = f"{host}:{output}/{saved_as}" if output else f"{host}:{saved_as}"
            return "success", f"verified {path} at {where}" + (f"; {cleanup}" if cleanup else "")
        case FileFailedThere(path=path, host=host, outcome=outcome, reason=reason):
            return "error", f"{path} was {outcome} at {host or 'the destination'}: {reason}"
        case FileKeptBoth(path=path, saved_as=saved_as, older_moved=older_moved, source=source, rewrite=True):
            if older_moved:
                return "info", f"{path}: newer version from {source}; the previous one is kept as {saved_as}"
            return "info", f"{path}: an older version from {source} came late; kept as {saved_as}"
        case FileKeptBoth(path=path, saved_as=saved_as, older_moved=older_moved, source=source, other_source=other):
            clash = f" from {source or 'an unnamed source'} clashes with the file from {other or 'an unknown source'}"
            if older_moved:
                return "warning", f"{path}{clash}: both kept, the older as {saved_as}"
            return "warning", f"{path}{clash}: both kept, the new one as {saved_as}"
        case Notice(level=level, message=message):
            return level, message
    return "info", repr(event)


# --- compact figures for table columns (never cut at 80 columns) --------------------------

def short_count(n: int) -> str:
    """A count in at most 5 characters, rounded down (a count of done chunks never reaches
    its total early): 980, 7.5k, 19.2k, 192k, 1.2M, 19.2M, 192M, 1.2G."""
    if n < 1000:
        return str(n)
    for unit, scale in (("k", 1000), ("M", 1000**2), ("G", 1000**3)):
        tenths = n * 10 // scale  # integers: 7300 is 7.3k, never 7.2k
        if tenths < 1000:
            return f"{tenths // 10}.{tenths % 10}{unit}"
        if tenths < 10_000 or unit == "G":
            return f"{tenths // 10}{unit}"
    raise AssertionError("unreachable")


def short_rate(bytes_per_second: float | None) -> str:
    """A throughput in at most 8 characters, decimal units: 183 MB/s, 4.5 MB/s, 850 kB/s."""
    if bytes_per_second is None:
        return ""
    value = max(0.0, bytes_per_second)
    for unit in ("B/s", "kB/s", "MB/s", "GB/s"):
        if value < 999.5 or unit == "GB/s":
            return f"{value:.1f} {unit}" if value < 9.95 and unit != "B/s" else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def short_duration(seconds: float | None) -> str:
    """A time left in at most 5 characters: 0:07, 12:05, 1h05m, 55h, >99h."""
    if seconds is None:
        return ""
    s = max(0, int(seconds + 0.5))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    if s < 10 * 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 3600}h" if s < 100 * 3600 else ">99h"


# --- one file's progress, in words (check, the exit summary) --------------------------------

RATE_AFTER_S = 3.0  # a file's own rate and time left are shown once it has taken this long
SHOWN_FILES = 10  # files named one by one in check and the exit summary; the rest are counted
# Upload rows that did not end with the file delivered whole (the latest row of its path).
CUT_SHORT = frozenset({"sending", "stopped", "held", "changed"})


def fraction_done(f: FileProgress) -> float:
    return 1.0 if f.chunks_total <= 0 else max(0.0, min(1.0, f.chunks_done / f.chunks_total))


def how_far(f: FileProgress) -> str:
    """`10 % (12/120 chunks of 120 MB)`."""
    return (f"{int(fraction_done(f) * 100)} % ({short_count(f.chunks_done)}/{short_count(f.chunks_total)} "
            f"chunks of {human_size(f.size)})")


def average_rate(f: FileProgress, now: float) -> float | None:
    """Bytes per second since the file started, once it has taken RATE_AFTER_S."""
    took = (f.finished or now) - f.started
    return fraction_done(f) * f.size / took if took >= RATE_AFTER_S else None


def in_flight_lines(files: tuple[FileProgress, ...], now: float, limit: int = SHOWN_FILES) -> list[str]:
    """One line per file in flight, oldest first: `in flight: a.h5 10 % (12/120 chunks of
    120 MB), 18 MB/s on average, about 0:06 left`."""
    active = sorted((f for f in files if f.finished is None), key=lambda f: (f.started, f.upload_id))
    lines = []
    for f in active[:limit]:
        line = f"in flight: {f.path} {how_far(f)}"
        rate = average_rate(f, now)
        if rate:
            left = (1 - fraction_done(f)) * f.size / rate
            line += f", {short_rate(rate)} on average, about {short_duration(left)} left"
        lines.append(line)
    if len(active) > limit:
        lines.append(f"in flight: {len(active) - limit} more")
    return lines


# --- the exit summary: printed to the shell when the app or a headless run ends -------------

def latest_by_path(files: tuple[FileProgress, ...]) -> list[FileProgress]:
    """The newest row of each path (a file sent again has a row per attempt)."""
    latest: dict[str, FileProgress] = {}
    for f in sorted(files, key=lambda f: f.started):
        latest[f.path] = f
    return list(latest.values())


def _named(files: list[FileProgress], limit: int) -> list[str]:
    lines = [f"    {f.path}  {how_far(f)}, {f.state}" for f in files[:limit]]
    if len(files) > limit:
        lines.append(f"    ... and {len(files) - limit} more")
    return lines


def upload_summary_lines(s: UploadSnapshot, limit: int = SHOWN_FILES) -> list[str]:
    """What the uploader got done, what failed, and each file it left unfinished."""
    cut = sorted((f for f in latest_by_path(s.files) if f.state in CUT_SHORT or f.finished is None),
                 key=lambda f: f.started)
    stopped = sum(1 for f in s.files if f.state == "stopped")  # counted as failed by the engine
    failed = max(0, s.files_failed - stopped)
    # Problems are named when there are some (a line that says "0 failed" reads like one).
    sent = f"upload{f' as {s.source}' if s.source else ''}: {plural(s.files_done, 'file')} sent"
    lines = [sent + (f", {failed} failed" if failed else "")]
    if s.receipts == "following":
        there = f", {s.files_failed_there} failed there" if s.files_failed_there else ""
        # Files given by hand (`upload PATH`, upload-file) are not followed: no receipt awaited.
        unfollowed = s.files_done - s.files_verified - s.awaiting_receipt - s.files_failed_there
        by_hand = f", {unfollowed} given by hand not followed" if unfollowed > 0 else ""
        lines.append(f"  receipts: {s.files_verified} verified at the destination, {s.awaiting_receipt} "
                     f"awaiting{there}{by_hand}")
    if cut:
        lines.append(f"upload: {plural(len(cut), 'file')} cut short and withdrawn (a watched folder's")
        lines.append("  files are sent again when the uploader next starts):")
        lines.extend(_named(cut, limit))
    if s.files_queued:
        lines.append(f"upload: {plural(s.files_queued, 'file')} queued, not started")
    if s.pending_deliveries:
        lines.append(f"upload: {plural(s.pending_deliveries, 'chunk')} not delivered (quit without waiting)")
    if not cut and not s.files_queued and not s.pending_deliveries:
        lines.append("upload: nothing cut short, nothing waiting")
    return lines


def reconstruct_summary_lines(s: ReconstructSnapshot, group: str = "", limit: int = SHOWN_FILES) -> list[str]:
    """What the reconstructor rebuilt, what it would not keep, and each file it left unfinished."""
    problems = [f"{s.files_quarantined} quarantined"] if s.files_quarantined else []
    problems += [f"{s.files_failed} refused or abandoned"] if s.files_failed else []
    lines = [", ".join([f"reconstruct: {plural(s.files_completed, 'file')} verified", *problems])]
    if s.records_rejected:
        lines.append(f"  {plural(s.records_rejected, 'record')} rejected (not msi-tui's, or damaged)")
    unfinished = sorted((f for f in s.files if f.finished is None), key=lambda f: f.started)
    if unfinished:
        again = f"group {group}" if group else "the reconstructor"
        lines.append(f"reconstruct: {plural(len(unfinished), 'file')} unfinished (read again when {again}")
        lines.append("  next starts):")
        lines.extend(_named(unfinished, limit))
    else:
        lines.append("reconstruct: nothing half-received")
    return lines


def exit_summary(upload: UploadSnapshot | str | None, reconstruct: ReconstructSnapshot | str | None,
                 log_path: Path | None, group: str = "", limit: int = SHOWN_FILES) -> list[str]:
    """The lines printed to the shell at the end; a str instead of a snapshot is why that
    service did not run (it could not start)."""
    lines = ["msi-tui: summary"]
    for name, snap in (("upload", upload), ("reconstruct", reconstruct)):
        if isinstance(snap, str):
            lines.append(f"{name}: did not run: {snap}")
        elif isinstance(snap, UploadSnapshot):
            lines.extend(upload_summary_lines(snap, limit))
        elif isinstance(snap, ReconstructSnapshot):
            lines.extend(reconstruct_summary_lines(snap, group, limit))
    lines.append(f"log: {log_path}" if log_path else "log: none (nothing was written to a log file)")
    return ["  " + line if i else line for i, line in enumerate(lines)]
