"""The full-screen app over the real engine and a real broker: a file dropped in the outbox
shows up verified in the Reconstruct pane (with its source) and byte for byte in the inbox, its
receipt turns it verified in the Upload pane, and `quit` typed in the command bar drains both
services and exits with 0.

Every wait is a condition polled with `pilot.pause(0.1)` under a deadline, never a sleep.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from msi_tui.engine.config import load_config
from msi_tui.engine.reconstruct import Reconstructor, ReconstructSettings
from msi_tui.engine.upload import Uploader
from msi_tui.engine.upload_settings import UploadSettings
from msi_tui.tui.app import MsiTuiApp
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.context import AppContext
from msi_tui.tui.event_buffer import EventBuffer
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.log_panel import EventLog
from msi_tui.tui.reconstruct_pane import ReconstructPane
from msi_tui.tui.upload_pane import UploadPane
from tests.fake_engine import run_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

WAIT_S = 60.0


async def wait_for(pilot, condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` between app refreshes until it holds; fail naming `what` and
    saying what the app showed at that moment."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{app_state(pilot.app)}")
        await pilot.pause(0.1)


def app_state(app: MsiTuiApp) -> str:
    """The slots, both panes' tables and the log panel, for a failure message."""
    lines = [f"slots: {[(s.name, s.status, s.error) for s in app.slots.values()]}"]
    try:
        lines.append(f"reconstruct rows: {reconstruct_rows(app)}")
        lines.append(f"upload rows: {table_rows(app, UploadPane)}")
        lines.append("log:")
        lines.extend(strip.text.rstrip() for strip in app.main_screen.query_one(EventLog).lines)
    except Exception as exc:  # the screen may be gone already
        lines.append(f"(screen not readable: {exc!r})")
    return "\n".join(lines)


def reconstruct_rows(app: MsiTuiApp) -> list[tuple[str, str]]:
    """(file, state) of every row in the Reconstruct pane's table, as plain text."""
    return [(row["file"], row["state"]) for row in table_rows(app, ReconstructPane)]


def table_rows(app: MsiTuiApp, pane: type[UploadPane | ReconstructPane]) -> list[dict[str, str]]:
    """Every row of a pane's table as {column: plain text}."""
    table = app.main_screen.query_one(pane).query_one(FilesTable)
    columns = [key for key, _ in table.layout_now]
    return [{column: getattr(cell, "plain", str(cell))
             for column, cell in zip(columns, table.get_row(key), strict=False)}
            for key in table.rows]


@run_async
async def test_dropped_file_arrives_verified_then_quit_exits_cleanly(
    kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    outbox, inbox = tmp_path / "outbox", tmp_path / "inbox"
    outbox.mkdir()
    inbox.mkdir()
    config = load_config(bootstrap=kafka_bootstrap)
    events = EventBuffer()
    uploader = Uploader(config, UploadSettings(topic=topic, n_threads=2, partitions=2, folder=outbox), events)
    reconstructor = Reconstructor(config, ReconstructSettings(
        output_dir=inbox, topic=topic, n_threads=2, group_id=f"g-{topic}", partitions=2), events)
    context = AppContext(cluster_name=config.name, bootstrap=config.bootstrap, topic=topic,
                         uploader=uploader, reconstructor=reconstructor, events=events,
                         cursor_blink=False)
    app = MsiTuiApp(context)
    name = "scope_trace_00001.trc"
    payload = os.urandom(300_000) + bytes(range(256)) * 100  # ~19 chunks of 16 KiB

    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: all(s.status == "running" for s in app.slots.values()),
                           "both services to start")

            # Written in place: the watcher sends it once the writer closes it. (Not moved in
            # from outside the outbox: watchdog reports that as a bare "created" with no close,
            # and FolderWatcher then waits for a close that never comes.)
            (outbox / name).write_bytes(payload)

            target = inbox / name
            await wait_for(
                pilot,
                lambda: (name, "verified") in reconstruct_rows(app)
                and target.is_file() and target.read_bytes() == payload,
                f"{name} verified in the Reconstruct pane and byte-identical in the inbox",
            )
            assert target.read_bytes() == payload
            source = uploader.snapshot().source
            assert source and app.main_screen.query_one(UploadPane).border_title == f"Upload as {source}"
            assert [row["source"] for row in table_rows(app, ReconstructPane) if row["file"] == name] == [source]
            # The reconstructor's receipt reaches the uploader: sent, then verified there.
            await wait_for(
                pilot,
                lambda: [row["state"] for row in table_rows(app, UploadPane) if row["file"] == name] == ["verified"],
                f"{name} verified at the destination in the Upload pane",
            )

            bar = app.main_screen.query_one(CommandBar)
            bar.focus()
            await pilot.pause()
            await pilot.press(*"quit")
            assert bar.value == "quit"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.return_code is not None, "the app to exit after quit")
        assert app.return_code == 0
        assert uploader.stopped and reconstructor.stopped
    finally:
        # A failure above must not leave engine threads talking to the broker.
        for service in (uploader, reconstructor):
            if not service.stopped:
                service.force_stop()
                service.wait_stopped(timeout=10)
