"""Text for people, shared by the console and the app (no Textual, no Rich)."""

from __future__ import annotations

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

LogLevel = Literal["info", "success", "warning", "error"]


def plural(n: int, word: str) -> str:
    """'1 chunk', '3 chunks'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_size(n: int | float) -> str:
    """Bytes as a short decimal figure: 0 B, 980 B, 1.2 kB, 45.0 MB, 1.07 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
        value /= 1000
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
