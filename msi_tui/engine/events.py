"""Facts the engine reports, as frozen plain dataclasses.

The engine calls a sink (any callable taking one event) from its worker threads. A sink must
be quick and must not raise: the console prints a line, the app appends to a queue it drains
on a timer. Per-chunk progress is never an event (thousands a second); it lives in the stats
snapshot instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    """Base of every engine event; `at` is a wall-clock time.time()."""

    at: float = field(default=0.0, kw_only=True)


# --- upload side -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileQueued(Event):
    """A file was found ready and waits for an upload thread."""

    path: str
    size: int


@dataclass(frozen=True)
class FileUploadStarted(Event):
    """An upload thread began reading and producing a file."""

    path: str
    size: int
    chunks: int
    upload_id: str


@dataclass(frozen=True)
class FileUploaded(Event):
    """Every chunk of the file was acknowledged by the broker."""

    path: str
    size: int
    chunks: int
    upload_id: str
    seconds: float


@dataclass(frozen=True)
class FileUploadFailed(Event):
    """The file could not be sent; `reason` says why in one line."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileChangedDuringUpload(Event):
    """The file changed while being sent: that upload is withdrawn and it is sent again."""

    path: str


@dataclass(frozen=True)
class FileVerified(Event):
    """A reconstructor's receipt says the upload was published and verified at `host`, in
    `output`, as `saved_as`; `cleanup` says what --after-verified then did at the source."""

    path: str
    upload_id: str
    host: str
    output: str
    saved_as: str
    cleanup: str = ""


@dataclass(frozen=True)
class FileFailedThere(Event):
    """A reconstructor's receipt says the upload was not published (`outcome`, `reason`)."""

    path: str
    upload_id: str
    host: str
    outcome: str
    reason: str


# --- reconstruct side ------------------------------------------------------------------


@dataclass(frozen=True)
class FileReconstructed(Event):
    """A file is complete, verified against the uploader's digest, and published under `path`."""

    path: str
    size: int
    upload_id: str
    seconds: float
    duplicate: bool = False
    source: str = ""  # the uploader's source name ("" from uploaders that sent none)


@dataclass(frozen=True)
class FileQuarantined(Event):
    """A rebuilt file failed verification and was moved aside, never into the output."""

    path: str
    reason: str
    quarantine_path: str


@dataclass(frozen=True)
class UploadNotRebuilt(Event):
    """An upload ended without a file: `refused` (a failure of its own, see
    msi_tui.engine.failures), `abandoned` (its records stopped) or `withdrawn` (by its uploader)."""

    path: str
    upload_id: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class RecordRejected(Event):
    """A record in the topic was refused (not ours, malformed, hostile) and skipped."""

    partition: int
    offset: int
    reason: str


@dataclass(frozen=True)
class FileKeptBoth(Event):
    """Another file already had the name, with other content. Both are kept: the new one
    was saved as `saved_as`, or, with `older_moved`, the older one moved to `saved_as`.
    `rewrite`: both are versions of one file of `source` (the newer keeps the name);
    otherwise `other_source` sent the file that was there ("" when unknown)."""

    path: str
    saved_as: str
    older_moved: bool = False
    source: str = ""
    other_source: str = ""
    rewrite: bool = False


# --- both ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice(Event):
    """A message for the operator: connection trouble, shutdown progress, errors."""

    level: Level
    message: str


Sink = Callable[[Event], None]


def guarded(sink: Sink, log: logging.Logger) -> Sink:
    """`sink`, made unable to raise into the thread that reports (a closed terminal, a front
    end gone): an event it cannot take is logged and dropped."""

    def report(event: Event) -> None:
        try:
            sink(event)
        except Exception as exc:
            log.warning("an event could not be shown (%s): %r", exc, event)

    return report


def discard(_event: Event) -> None:
    """A sink that drops everything (library use and benchmarks)."""
