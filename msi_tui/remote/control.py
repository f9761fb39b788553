"""`msi-tui attach`, `msi-tui status` and `msi-tui stop`: the commands on running services."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msi_tui.console import reconstruct_counts, upload_counts
from msi_tui.engine.events import discard
from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot
from msi_tui.errors import OperatorError
from msi_tui.formatting import plural
from msi_tui.remote.client import ServiceConnection
from msi_tui.remote.discovery import running
from msi_tui.remote.names import resolve, services_dir

STATUS_TIMEOUT_S = 3.0
STOP_REPORT_S = 2.0


def run_control(args: argparse.Namespace, log_to_file: Callable[[], Path]) -> int:
    if args.command == "status":
        return status(args.json)
    if args.command == "stop":
        return stop(args.name, force=args.force)
    from msi_tui.launch import run_attach_command

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise OperatorError("attach opens the full-screen app and needs a terminal; `msi-tui status` prints "
                            "the services' counts")
    return run_attach_command(args, log_to_file())


# --- status ----------------------------------------------------------------------------------


class _Shown:
    """Just enough of a service for the console's counts."""

    def __init__(self, snap: UploadSnapshot | ReconstructSnapshot) -> None:
        self._snap = snap

    def snapshot(self) -> UploadSnapshot | ReconstructSnapshot:
        return self._snap


def describe_service(connection: ServiceConnection,
                     snap: UploadSnapshot | ReconstructSnapshot | None) -> dict[str, Any]:
    info = connection.info
    row: dict[str, Any] = {
        "name": info.name, "kind": info.kind, "state": snap.state if snap else "unknown",
        "folder": info.folder, "topic": info.topic, "bootstrap": info.bootstrap, "cluster": info.cluster_name,
        "group_id": info.group_id, "pid": info.pid, "started_at": info.started_at, "version": info.version,
        "socket": str(connection.path),
    }
    if isinstance(snap, UploadSnapshot):
        row["counts"] = {k: getattr(snap, k) for k in (
            "files_queued", "files_in_progress", "files_done", "files_failed", "pending_deliveries",
            "bytes_delivered", "files_verified", "awaiting_receipt", "files_failed_there")}
        row["connection"], row["text"] = snap.connection, upload_counts(_Shown(snap))  # type: ignore[arg-type]
    elif isinstance(snap, ReconstructSnapshot):
        row["counts"] = {k: getattr(snap, k) for k in (
            "messages_read", "files_completed", "files_in_progress", "files_quarantined", "files_failed",
            "records_rejected", "bytes_written", "lag")}
        row["connection"], row["text"] = snap.connection, reconstruct_counts(_Shown(snap))  # type: ignore[arg-type]
    return row


def running_services() -> list[dict[str, Any]]:
    """What `status` shows, one dict per running service."""
    rows = []
    for connection, _path in running(lambda path: ServiceConnection.open(
            path, events=False, snapshot_every=0, timeout=STATUS_TIMEOUT_S, client="msi-tui status")):
        try:
            rows.append(describe_service(connection, connection.read_until_snapshot(STATUS_TIMEOUT_S)))
        finally:
            connection.sock.close()
    return rows


def status(as_json: bool = False, out: Any = None) -> int:
    out = out or sys.stdout
    rows = running_services()
    if as_json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write(f"no service is running (sockets live in {services_dir()})\n")
        return 0
    for row in rows:
        where = (f"watching {row['folder']}" if row["kind"] == "upload" and row["folder"]
                 else f"writing to {row['folder']} (group {row['group_id']})" if row["kind"] == "reconstruct"
                 else "sending files given by hand")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started_at"]))
        out.write(f"{row['name']}  {row['kind']}  {row['state']}  {where}, topic {row['topic']} at {row['bootstrap']}\n"
                  f"  {row.get('text', '')}\n"
                  f"  pid {row['pid']}, since {since}, socket {row['socket']}\n")
    return 0


# --- stop ------------------------------------------------------------------------------------


def stop(name: str, force: bool = False, out: Any = None, timeout: float | None = None) -> int:
    """Ask a service to drain and stop (or to stop now), and wait until it has."""
    out = out or sys.stdout
    connection = ServiceConnection.open(resolve(name), sink=discard, events=False, snapshot_every=STOP_REPORT_S,
                                        client="msi-tui stop")
    connection.start()
    info = connection.info
    error = connection.command("force_stop" if force else "request_stop", wait=10.0)
    if error:
        connection.close()
        raise OperatorError(f"{info.name}: {error}")
    say = lambda line: (out.write(line + "\n"), out.flush())
    say(f"stopping {info.name} (pid {info.pid}): " + (
        "now, giving up what is in flight" if force else
        "delivering every enqueued chunk first" if info.kind == "upload" else "committing and leaving the group"))
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not connection.ended.wait(STOP_REPORT_S):
            snap = connection.snapshot
            if isinstance(snap, UploadSnapshot) and snap.pending_deliveries:
                say(f"waiting for {plural(snap.pending_deliveries, 'chunk')} to be delivered "
                    f"(`msi-tui stop {info.name} --force` gives up)")
            if deadline is not None and time.monotonic() > deadline:
                say(f"{info.name} has not stopped yet; it goes on stopping")
                return 1
    except KeyboardInterrupt:
        say(f"no longer waiting; {info.name} goes on stopping")
        return 130
    finally:
        if not connection.ended.is_set():
            connection.close()
    if not connection.stopped_by_service:
        say(f"{info.name}: {connection.end_reason}")
        return 1
    if connection.died:
        say(f"{info.name} stopped after an error: {connection.died}")
        return 1
    say(f"{info.name} stopped")
    return 0
