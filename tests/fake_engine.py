"""A scripted fake engine for the app's tests, snapshots and screenshots.

`FakeUploader` and `FakeReconstructor` implement the service protocols. Nothing moves on its
own: no wall clock, no threads. Test code sets counts, advances the fake time and drains
chunks step by step, and every call the app makes is recorded in `calls`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import pytest

from msi_tui.engine.events import (
    FileFailedThere,
    FileReconstructed,
    FileUploaded,
    FileUploadStarted,
    FileVerified,
    Notice,
    RecordRejected,
)
from msi_tui.engine.stats import FileProgress, ReconstructSnapshot, UploadSnapshot
from msi_tui.errors import OperatorError
from msi_tui.tui.context import AppContext
from msi_tui.tui.event_buffer import EventBuffer

if TYPE_CHECKING:  # the app itself is imported where it is made: keep this module light
    from textual.pilot import Pilot

    from msi_tui.tui.app import MsiTuiApp

FIXED_NOW = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC: every scripted time counts from here
MB = 1_000_000
CHUNK = 1 * MB
SOURCE = "scope-7"  # the uploader's source name (`upload --source`)
OTHER_SOURCE = "scope-3"  # another instrument sending to the same reconstructor
DESTINATION = "archive-1"  # the reconstructor's host, as its receipts name it


class FakeService:
    """What both fakes share: recorded calls, a scripted start, a stop the test controls."""

    def __init__(self, start_error: str | None = None) -> None:
        self.calls: list[str] = []
        self.start_error = start_error
        self.start_gate: threading.Event | None = None
        """When set, start() waits on it (bounded), so a test can quit while starting."""
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        self.calls.append("start")
        if self.start_gate is not None:
            self.start_gate.wait(timeout=10)
        if self.start_error:
            raise OperatorError(self.start_error)
        self._set_state(self.running_state)

    def pause(self) -> None:
        self.calls.append("pause")
        self._set_state("paused")

    def resume(self) -> None:
        self.calls.append("resume")
        self._set_state(self.running_state)

    def force_stop(self) -> None:
        self.calls.append("force_stop")
        self._finish_stop()

    def wait_stopped(self, timeout: float) -> bool:
        self.calls.append("wait_stopped")
        return self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _finish_stop(self) -> None:
        self._set_state("stopped")
        self._stopped.set()

    # Subclasses keep their snapshot in `snap` and say what "running" is called.
    running_state = "running"
    snap: UploadSnapshot | ReconstructSnapshot

    def set(self, **changes: object) -> None:
        """Replace fields of the next snapshot (test code drives the numbers)."""
        with self._lock:
            self.snap = dataclasses.replace(self.snap, **changes)  # type: ignore[arg-type]

    def _set_state(self, state: str) -> None:
        self.set(state=state)

    def advance(self, path: str, chunks: int) -> None:
        """`chunks` more chunks of the file in flight at `path`."""
        files = tuple(dataclasses.replace(f, chunks_done=min(f.chunks_total, f.chunks_done + chunks))
                      if f.path == path and f.finished is None else f for f in self.snap.files)
        self.set(files=files)

    def finish(self, path: str, state: str, after: float = 0.0) -> None:
        """End the file in flight at `path` in `state`, `after` seconds past the snapshot."""
        at = self.snap.taken_at + after
        files = tuple(dataclasses.replace(f, state=state, finished=at, history=(*f.history, (state, at)))
                      if f.path == path and f.finished is None else f for f in self.snap.files)
        self.set(files=files)


class FakeUploader(FakeService):
    """An UploadService whose snapshot the test scripts; request_stop() drains on demand."""

    running_state = "watching"

    def __init__(self, folder: Path | None = Path("/data/scope-7"), start_error: str | None = None,
                 source: str = SOURCE) -> None:
        super().__init__(start_error)
        self.folder = folder
        self.enqueued: list[Path] = []
        self.snap = UploadSnapshot(
            state="starting", files_queued=0, files_in_progress=0, files_done=0,
            files_failed=0, chunks_produced=0, chunks_delivered=0, bytes_delivered=0,
            pending_deliveries=0, connection="connecting", taken_at=FIXED_NOW, source=source,
        )

    def snapshot(self) -> UploadSnapshot:
        with self._lock:
            return self.snap  # type: ignore[return-value]

    def enqueue_file(self, path: Path) -> None:
        self.calls.append(f"enqueue_file {path}")
        self.enqueued.append(path)

    def request_stop(self) -> None:
        """Like the real uploader: draining until the test delivers the pending chunks."""
        self.calls.append("request_stop")
        if self.snapshot().pending_deliveries == 0:
            self._finish_stop()
        else:
            self._set_state("draining")

    def tick(self, seconds: float, delivered_bytes: int) -> None:
        """Advance the fake time; `delivered_bytes` arrived at the broker meanwhile."""
        snap = self.snapshot()
        self.set(
            taken_at=snap.taken_at + seconds,
            bytes_delivered=snap.bytes_delivered + delivered_bytes,
            chunks_delivered=snap.chunks_delivered + delivered_bytes // CHUNK,
            chunks_produced=snap.chunks_produced + delivered_bytes // CHUNK,
        )

    def deliver(self, chunks: int) -> None:
        """Acknowledge `chunks` pending deliveries; the drain ends when none is left."""
        snap = self.snapshot()
        left = max(0, snap.pending_deliveries - chunks)
        self.set(pending_deliveries=left, chunks_delivered=snap.chunks_delivered + chunks,
                 bytes_delivered=snap.bytes_delivered + chunks * CHUNK)
        if left == 0 and snap.state == "draining":
            self._finish_stop()


class FakeReconstructor(FakeService):
    """A ReconstructService whose snapshot the test scripts; stops at once unless told."""

    running_state = "consuming"

    def __init__(self, output_dir: Path = Path("/data/received"), group_id: str = "msi-lab",
                 start_error: str | None = None, stops_at_once: bool = True) -> None:
        super().__init__(start_error)
        self.output_dir = output_dir
        self.group_id = group_id
        self.stops_at_once = stops_at_once
        self.snap = ReconstructSnapshot(
            state="starting", messages_read=0, files_completed=0, files_in_progress=0,
            files_quarantined=0, records_rejected=0, bytes_written=0, threads=0, lag=None,
            connection="connecting", taken_at=FIXED_NOW,
        )

    def snapshot(self) -> ReconstructSnapshot:
        with self._lock:
            return self.snap  # type: ignore[return-value]

    def request_stop(self) -> None:
        self.calls.append("request_stop")
        if self.stops_at_once:
            self._finish_stop()
        else:
            self._set_state("stopping")

    def finish_stop(self) -> None:
        """End a stop that was not immediate (offsets committed, consumers closed)."""
        self._finish_stop()

    def tick(self, seconds: float, written_bytes: int) -> None:
        snap = self.snapshot()
        self.set(
            taken_at=snap.taken_at + seconds,
            bytes_written=snap.bytes_written + written_bytes,
            messages_read=snap.messages_read + written_bytes // CHUNK,
        )


def make_context(uploader: FakeUploader | None = None, reconstructor: FakeReconstructor | None = None,
                 **overrides: object) -> AppContext:
    """An AppContext for tests: fixed clock, no cursor blink, lab-like names."""
    values: dict[str, object] = {
        "cluster_name": "lab", "bootstrap": "kafka-1.lab:9092", "topic": "instrument-files",
        "uploader": uploader, "reconstructor": reconstructor, "events": EventBuffer(),
        "initial_pane": None, "log_path": None, "clock": lambda: FIXED_NOW, "cursor_blink": False,
    }
    values.update(overrides)
    return AppContext(**values)  # type: ignore[arg-type]


# --- a scripted scene: both panes in the middle of a transfer ------------------------------

# A minute of throughput at 5 Hz: a ramp, then a plateau with some wobble.
RATES_MB = [min(180, 40 + 6 * i) + (i * 37 % 23) for i in range(120)]


SMALL_CHUNK = 16_384  # the default chunk: a big file's counts run into the tens of thousands
BIG_FILE = "run-0412/stack-overnight.h5"  # 1.5 GB, in flight on both sides for the whole scene
BIG_SIZE = 1_500_000_000
BIG_CHUNKS = -(-BIG_SIZE // SMALL_CHUNK)  # 91,553
BIG_STARTED = FIXED_NOW + 48.1  # ~25 MB/s since, as the scene goes on
SCENE_AT = FIXED_NOW + 61.2  # the snapshots' time when the scene is set (before the ticks)


def _progress(path: str, size_mb: int, done: int, state: str, started: float,
              finished: float | None = None, source: str = SOURCE, where: str = "",
              upload_id: str = "", partition: int = 0, history: tuple[tuple[str, float], ...] = ()
              ) -> FileProgress:
    """One row, with the stages the engine would have noted: `history` as given, else an
    upload's start and, once finished, its end."""
    total = max(1, size_mb)
    if not history:
        history = (("sending", started), *(((state, finished),) if finished is not None else ()))
    return FileProgress(path=path, size=size_mb * MB, chunks_done=done, chunks_total=total,
                        state=state, started=started, finished=finished, source=source, where=where,
                        upload_id=upload_id or f"id-{PurePath(path).stem}", partition=partition,
                        history=history)


def _big(done: int, state: str, started: float) -> FileProgress:
    return FileProgress(path=BIG_FILE, size=BIG_SIZE, chunks_done=done, chunks_total=BIG_CHUNKS,
                        state=state, started=started, source=SOURCE, upload_id="id-stack-overnight",
                        partition=4, history=((state, started),))


def _verified_at(path: str) -> str:
    """Where a receipt says the reconstructor published `path` (as FileProgress.where)."""
    return f"{DESTINATION}:/data/received/{path}"


QUARANTINE_REASON = "digest mismatch: the rebuilt file differs from the one sent"


def _sent(path: str, started: float, delivered: float, outcome: str, at: float, **kw: object) -> FileProgress:
    """An upload row that went sending -> sent -> `outcome` (a receipt), at those times."""
    history = (("sending", started), ("done", delivered), (outcome, at))
    return _progress(path, 120 if "scan" in path else 6, 120 if "scan" in path else 6, outcome, started,
                     delivered, history=history, **kw)  # type: ignore[arg-type]


def mid_transfer_upload(up: FakeUploader) -> None:
    """Numbers and files of an uploader halfway through a morning's acquisitions: a 1.5 GB
    file and a small one sending (pinned at the top), and the finished ones in each state a
    receipt leaves them in (sent and awaiting its receipt, verified at the destination,
    quarantined there) or failed here. Newest finished first, so 80x24 shows one of each."""
    t = FIXED_NOW - 60
    up.set(
        taken_at=up.snapshot().taken_at + 61.2,  # ~80 MB/s since the last reading
        state="watching", connection="connected", files_queued=1, files_in_progress=2,
        files_done=41, files_failed=1, chunks_produced=5_210, chunks_delivered=4_892,
        bytes_delivered=4_892 * MB, pending_deliveries=318,
        files_verified=38, awaiting_receipt=2, files_failed_there=1, receipts="following",
        files=(
            _sent("run-0412/scan-041.h5", t, t + 2, "verified", t + 2.9,
                  where=_verified_at("run-0412/scan-041.h5"), partition=1),
            _progress("run-0412/bad-header.h5", 4, 1, "failed", t + 3, t + 4, partition=2),
            _sent("run-0412/scan-042.h5", t + 3, t + 5, "verified", t + 5.8,
                  where=_verified_at("run-0412/scan-042.h5"), partition=3),
            _sent("run-0412/calib-07.h5", t + 6, t + 7, "quarantined there", t + 7.6,
                  where=QUARANTINE_REASON, partition=0),
            _progress("run-0412/scan-043.h5", 120, 120, "done", t + 6, t + 8, partition=1),
            _big(20_000, "sending", BIG_STARTED),
            _progress("run-0412/scan-044.h5", 120, 12, "sending", t + 9, partition=2),
        ),
    )


def mid_transfer_reconstruct(rec: FakeReconstructor) -> None:
    """Numbers and files of a reconstructor a little behind the uploader, taking files from
    two instruments."""
    t = FIXED_NOW - 60
    received = lambda at: (("receiving", at - 2), ("verified", at))
    rec.set(
        taken_at=rec.snapshot().taken_at + 61.2,
        state="consuming", connection="connected", messages_read=4_870, files_completed=40,
        files_in_progress=3, files_quarantined=1, records_rejected=1,
        bytes_written=4_801 * MB, threads=3, lag=22,
        files=(
            _progress("run-0412/scan-041.h5", 120, 120, "verified", t + 1, t + 3, partition=1,
                      history=received(t + 3)),
            _progress("run-0412/scan-042.h5", 120, 120, "verified", t + 4, t + 6, partition=3,
                      history=received(t + 6)),
            _progress("run-0098/trace_01.trc", 2, 2, "verified", t + 5, t + 6.5, source=OTHER_SOURCE,
                      partition=0, history=received(t + 6.5)),
            _progress("run-0412/calib-07.h5", 6, 6, "quarantined", t + 7, t + 7.5, partition=0,
                      history=(("receiving", t + 7), ("quarantined", t + 7.5))),
            _progress("run-0412/scan-043.h5", 120, 70, "receiving", t + 9, partition=1,
                      history=(("receiving", t + 9),)),
            _big(15_000, "receiving", BIG_STARTED + 0.4),
            _progress("run-0412/scan-044.h5", 120, 5, "receiving", t + 10, partition=2,
                      history=(("receiving", t + 10),)),
        ),
    )


def mid_transfer_events(events: EventBuffer) -> None:
    """A few log lines of the kind a transfer produces."""
    t = FIXED_NOW - 20
    for e in (
        FileUploaded(path="run-0412/scan-042.h5", size=120 * MB, chunks=120, upload_id="u42",
                     seconds=2.1, at=t),
        FileReconstructed(path="run-0412/scan-042.h5", size=120 * MB, upload_id="u42",
                          seconds=2.4, source=SOURCE, at=t + 1),
        FileVerified(path="run-0412/scan-042.h5", upload_id="u42", host=DESTINATION,
                     output="/data/received", saved_as="run-0412/scan-042.h5", at=t + 2),
        FileUploadStarted(path="run-0412/scan-044.h5", size=120 * MB, chunks=120,
                          upload_id="u44", at=t + 3),
        RecordRejected(partition=2, offset=18_331, reason="not an msi-tui record (no header)",
                       at=t + 4),
        Notice(level="error", message="run-0412/bad-header.h5: permission denied", at=t + 5),
        FileFailedThere(path="run-0412/calib-07.h5", upload_id="u07", host=DESTINATION,
                        outcome="quarantined", reason=QUARANTINE_REASON, at=t + 6),
    ):
        events(e)


def play_mid_transfer(app: object, up: FakeUploader | None, rec: FakeReconstructor | None) -> None:
    """Set the scene, then step the fake time so the rates, sparklines and files in flight
    move (the big file at ~25 MB/s, scan-044 at 2.5 MB/s)."""
    if up is not None:
        mid_transfer_upload(up)
    if rec is not None:
        mid_transfer_reconstruct(rec)
    for i, rate in enumerate(RATES_MB):
        if up is not None:
            up.tick(0.2, int(rate * MB * 0.2))
            up.advance(BIG_FILE, 305)
            up.advance("run-0412/scan-044.h5", i % 2)
        if rec is not None:
            rec.tick(0.2, int((rate - 10 + (i % 3) * 5) * MB * 0.2))
            rec.advance(BIG_FILE, 300)
            rec.advance("run-0412/scan-043.h5", i % 3 == 0)
        app.refresh_view()  # type: ignore[attr-defined]


async def settle(pilot: object) -> None:
    """Wait until the start workers are done and the screen has caught up (never a sleep)."""
    from textual.worker import WorkerFailed

    app = pilot.app  # type: ignore[attr-defined]
    for worker in list(app.workers):
        try:
            await worker.wait()
        except WorkerFailed:
            pass  # a scripted start error: the app shows it, the test looks at that
    await pilot.pause()  # type: ignore[attr-defined]
    app.refresh_view()
    await pilot.wait_for_scheduled_animations()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Log timestamps in UTC, so snapshots match on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def use_utc_process_wide() -> None:
    """For scripts (screenshots): the same stable timestamps as the tests."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test with asyncio.run (no pytest async plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def scene_mid_transfer(pilot: object) -> None:
    """Both panes halfway through a transfer, with a deterministic log (the start lines of
    the two services race each other, so the log is cleared before the scripted events)."""
    app = pilot.app  # type: ignore[attr-defined]
    await settle(pilot)
    app.action_clear_log()
    mid_transfer_events(app.context.events)
    play_mid_transfer(app, app.context.uploader, app.context.reconstructor)
    await pilot.pause()  # type: ignore[attr-defined]


async def scene_check(pilot: object) -> None:
    """The mid-transfer scene, then the operator types `check`."""
    await scene_mid_transfer(pilot)
    app = pilot.app  # type: ignore[attr-defined]
    app.action_clear_log()
    app.run_command("check")
    await pilot.pause()  # type: ignore[attr-defined]


async def scene_quit_confirming(pilot: object) -> None:
    """The mid-transfer scene, then `quit`: two files are being sent, so it asks first."""
    await scene_mid_transfer(pilot)
    app = pilot.app  # type: ignore[attr-defined]
    app.run_command("quit")
    await pilot.pause()  # type: ignore[attr-defined]


async def scene_quit_draining(pilot: object) -> None:
    """The mid-transfer scene, then `quit` twice (yes, cut the files short): the uploader
    drains its 318 pending chunks."""
    await scene_quit_confirming(pilot)
    app = pilot.app  # type: ignore[attr-defined]
    app.run_command("quit")
    app.context.uploader.deliver(107)
    app.refresh_view()
    await pilot.pause()  # type: ignore[attr-defined]


async def scene_file_detail(pilot: object) -> None:
    """The mid-transfer scene, then `show stack-overnight.h5`: the 1.5 GB file in flight on
    both sides, in full."""
    await scene_mid_transfer(pilot)
    app = pilot.app  # type: ignore[attr-defined]
    app.run_command(f"show {PurePath(BIG_FILE).name}")
    await pilot.pause()  # type: ignore[attr-defined]


async def scene_errors_only(pilot: object) -> None:
    """The mid-transfer scene, then F5: the log shows its warnings and errors only."""
    await scene_mid_transfer(pilot)
    await pilot.press("f5")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


def make_app(up: FakeUploader | None = None, rec: FakeReconstructor | None = None,
             **overrides: object) -> tuple[MsiTuiApp, FakeUploader, FakeReconstructor]:
    """The app on a fake uploader and reconstructor (new ones unless given), with the two fakes
    for the test to script and inspect; `overrides` as for make_context."""
    from msi_tui.tui.app import MsiTuiApp

    up = FakeUploader() if up is None else up
    rec = FakeReconstructor() if rec is None else rec
    return MsiTuiApp(make_context(up, rec, **overrides)), up, rec


def mid_transfer_app(**overrides: object) -> MsiTuiApp:
    """The app on new fakes, for a scene to play (snapshots, screenshots)."""
    return make_app(None, None, **overrides)[0]


@asynccontextmanager
async def settled(app: MsiTuiApp, size: tuple[int, int] = (80, 24)) -> AsyncIterator[Pilot[int]]:
    """`app.run_test` at `size`, its Pilot yielded once the app has settled (see settle)."""
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield pilot
