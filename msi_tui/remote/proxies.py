"""Stand-ins for the engine's services, backed by a connection to a running service.

`RemoteUploader` and `RemoteReconstructor` implement the service protocols of
msi_tui.engine.service, so the app (or anything else written against them) runs on a
service in another process as it runs on one of its own: `snapshot()` is the newest
snapshot the service pushed (never a round trip), commands are sent without waiting,
`stopped` is the end of the connection. `start()` does not start anything: the service
runs already; it waits for the first snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from msi_tui.engine.events import Notice
from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot
from msi_tui.errors import OperatorError
from msi_tui.remote.client import ServiceConnection

FIRST_SNAPSHOT_S = 10.0
ENQUEUE_REPLY_S = 2.0


class RemoteService:
    """What both proxies share."""

    kind = ""

    def __init__(self, connection: ServiceConnection) -> None:
        self.connection = connection
        self.info = connection.info
        self.name = connection.info.name

    def start(self) -> None:
        """Wait for the service's first snapshot and, should it still be starting, for its
        start to end (the app shows the pane starting meanwhile)."""
        connection = self.connection
        if not connection.first_snapshot.wait(FIRST_SNAPSHOT_S):
            raise OperatorError(f"service {self.name}: no answer in {FIRST_SNAPSHOT_S:g} s"
                                + (f" ({connection.end_reason})" if connection.ended.is_set() else ""))
        while self.snapshot().state == "starting":
            if connection.ended.wait(0.1):
                raise OperatorError(f"service {self.name}: {connection.end_reason}")

    def snapshot(self) -> UploadSnapshot | ReconstructSnapshot:
        """The newest snapshot the service pushed (each proxy says of which kind)."""
        raise NotImplementedError

    def pause(self) -> None:
        self._command("pause")

    def resume(self) -> None:
        self._command("resume")

    def request_stop(self) -> None:
        """Drain and stop the service itself (for every client): `quit service`."""
        self._command("request_stop")

    def force_stop(self) -> None:
        self._command("force_stop")

    def wait_stopped(self, timeout: float) -> bool:
        return self.connection.ended.wait(timeout)

    @property
    def stopped(self) -> bool:
        """The service stopped, or this client lost it or detached."""
        return self.connection.ended.is_set()

    @property
    def died(self) -> str | None:
        return self.connection.died or None

    @property
    def gone(self) -> str | None:
        """Why the service is no longer here (stopped, killed, ...), None while it is."""
        connection = self.connection
        if not connection.ended.is_set() or connection.end_reason == "detached":
            return None
        return connection.end_reason

    def detach(self) -> None:
        """Close this client's connection; the service goes on."""
        self.connection.close()

    def _command(self, name: str) -> None:
        # The engine's pause() and the like never raise: a service that is gone is news for
        # the log, not an exception in the app.
        if self.connection.ended.is_set():
            return
        try:
            self.connection.command(name)
        except OperatorError as exc:
            self.connection.sink(Notice(level="error", message=str(exc), at=time.time()))

    def _current(self, placeholder: UploadSnapshot | ReconstructSnapshot) -> UploadSnapshot | ReconstructSnapshot:
        snap = self.connection.snapshot
        if snap is None:
            return placeholder
        if self.gone and not self.connection.stopped_by_service:
            return dataclasses.replace(snap, state="gone")
        return snap


class RemoteUploader(RemoteService):
    """An UploadService in another process."""

    kind = "upload"

    def __init__(self, connection: ServiceConnection) -> None:
        super().__init__(connection)
        self.folder: Path | None = Path(self.info.folder) if self.info.folder else None

    def snapshot(self) -> UploadSnapshot:
        return self._current(UploadSnapshot(  # type: ignore[return-value]
            state="attaching", files_queued=0, files_in_progress=0, files_done=0, files_failed=0,
            chunks_produced=0, chunks_delivered=0, bytes_delivered=0, pending_deliveries=0,
            taken_at=time.time()))

    def enqueue_file(self, path: Path) -> None:
        """Send one file now; the service reads it, so the path is made absolute here."""
        error = self.connection.command("enqueue_file", str(Path(path).absolute()), wait=ENQUEUE_REPLY_S)
        if error:
            raise OperatorError(error)

    def idle(self) -> bool:
        """Nothing queued, being read or awaiting delivery, as of the newest snapshot."""
        s = self.snapshot()
        return not (s.files_queued or s.files_in_progress or s.pending_deliveries)


class RemoteReconstructor(RemoteService):
    """A ReconstructService in another process."""

    kind = "reconstruct"

    def __init__(self, connection: ServiceConnection) -> None:
        super().__init__(connection)
        self.output_dir = Path(self.info.folder)
        self.group_id = self.info.group_id

    def snapshot(self) -> ReconstructSnapshot:
        return self._current(ReconstructSnapshot(  # type: ignore[return-value]
            state="attaching", messages_read=0, files_completed=0, files_in_progress=0, files_quarantined=0,
            records_rejected=0, bytes_written=0, threads=0, lag=None, taken_at=time.time()))


def proxy_for(connection: ServiceConnection) -> RemoteUploader | RemoteReconstructor:
    if connection.info.kind == "upload":
        return RemoteUploader(connection)
    if connection.info.kind == "reconstruct":
        return RemoteReconstructor(connection)
    raise OperatorError(f"service {connection.info.name} is of a kind this msi-tui does not know: "
                        f"{connection.info.kind}")
