"""Every command and key of the app, driven with Pilot against the scripted fake engine.

Tests wait on conditions (workers finished, screen settled), never on the wall clock.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from rich.console import Console

from msi_tui.console import reconstruct_counts, upload_counts
from msi_tui.engine.events import FileUploaded
from msi_tui.tui.app import MsiTuiApp, choose_layout
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.event_buffer import EventBuffer
from msi_tui.tui.help_screen import HelpScreen
from msi_tui.tui.log_panel import EventLog
from msi_tui.tui.upload_pane import UploadPane
from tests.fake_engine import (
    FIXED_NOW,
    FakeUploader,
    make_app,
    make_context,
    mid_transfer_reconstruct,
    mid_transfer_upload,
    run_async,
    settled,
)

pytestmark = pytest.mark.timeout(60)


def log_text(app: MsiTuiApp) -> str:
    """Everything in the log panel as plain text, wrapped lines joined with one space."""
    return " ".join(strip.text.strip() for strip in app.main_screen.query_one(EventLog).lines)


def messages(app: MsiTuiApp) -> list[str]:
    """The log panel's lines as written (not wrapped), oldest first."""
    return [line.message for line in app.main_screen.query_one(EventLog).kept]


def rendered(renderable: object) -> str:
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


async def type_command(pilot, line: str) -> None:
    app = pilot.app
    bar = app.query_one(CommandBar)
    bar.focus()
    bar.value = line
    await pilot.press("enter")
    await pilot.pause()


async def type_or_press(pilot, typed: bool, command: str, key: str) -> None:
    """The same action two ways: `command` typed into the bar, or its key pressed."""
    if typed:
        await type_command(pilot, command)
    else:
        await pilot.press(key)
        await pilot.pause()


@run_async
async def test_services_start_in_workers_and_panes_show_their_snapshots() -> None:
    app, up, rec = make_app()
    async with settled(app, (120, 40)):
        assert up.calls == ["start"] and rec.calls == ["start"]
        mid_transfer_upload(up)
        app.refresh_view()
        summary = str(app.query_one("#upload-summary").render())
        assert "sent 41" in summary and "failed 1" in summary
        assert "started" in log_text(app)


@run_async
async def test_check_writes_the_seed_counts_and_more() -> None:
    app, up, rec = make_app()
    async with settled(app, (120, 40)) as pilot:
        mid_transfer_upload(up)
        mid_transfer_reconstruct(rec)
        await type_command(pilot, "check")
        # The headless console's own lines, after each service's state.
        text = log_text(app)
        assert f"upload (watching): {upload_counts(up)}" in text
        assert f"reconstruct (consuming): {reconstruct_counts(rec)}" in text
        assert "done 41, failed 1; chunks waiting for delivery 318" in text
        assert "verified at destination 38, awaiting receipt 2, failed there 1" in text
        assert "messages read 4870, files completed 40" in text and "lag 22" in text


@pytest.mark.parametrize("how", ["f2", "f2-from-table", "typed-c"])
@run_async
async def test_check_by_key_and_alias(how: str) -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        if how == "f2-from-table":
            app.action_focus_panes()  # F-keys work wherever the focus is
        await type_or_press(pilot, how == "typed-c", "c", "f2")
        assert "upload (watching): files enqueued 0" in log_text(app)


@run_async
async def test_letter_keys_type_into_the_command_bar_when_it_has_focus() -> None:
    app, up, _rec = make_app()
    async with settled(app) as pilot:
        await pilot.press("q", "c")
        assert app.query_one(CommandBar).value == "qc"
        assert app.is_running and "request_stop" not in up.calls


@pytest.mark.parametrize("how", ["typed", "key"])
@run_async
async def test_pause_and_resume_call_the_services(how: str) -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        await type_or_press(pilot, how == "typed", "pause", "f3")
        assert "pause" in up.calls and "pause" in rec.calls
        assert "paused" in str(app.query_one("#upload-summary").render())
        await type_or_press(pilot, how == "typed", "resume", "f4")
        assert "resume" in up.calls and "resume" in rec.calls
        assert "watching" in str(app.query_one("#upload-summary").render())


@run_async
async def test_pause_one_pane_only() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        await type_command(pilot, "pause upload")
        assert "pause" in up.calls and "pause" not in rec.calls


@run_async
async def test_upload_path_enqueues_one_file(tmp_path: Path) -> None:
    target = tmp_path / "scan 1.h5"
    target.write_bytes(b"x" * 10)
    app, up, _rec = make_app()
    async with settled(app) as pilot:
        await type_command(pilot, f"upload {target}")
        assert up.enqueued == [target]
        assert "queued" in log_text(app)


@run_async
async def test_upload_refuses_missing_files_and_folders(tmp_path: Path) -> None:
    app, up, _rec = make_app()
    async with settled(app, (120, 40)) as pilot:
        await type_command(pilot, f"upload {tmp_path / 'nope.bin'}")
        await type_command(pilot, f"upload {tmp_path}")
        await type_command(pilot, "upload")
        text = log_text(app)
        assert "no such file" in text and "is a folder" in text and "usage: upload PATH" in text
        assert up.enqueued == []


@run_async
async def test_unknown_command_says_so_clearly() -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        await type_command(pilot, "frobnicate now")
        assert "unknown command 'frobnicate': type 'help' for the list" in log_text(app)
        assert app.is_running


@pytest.mark.parametrize("how", ["typed", "f1", "?"])
@run_async
async def test_help_shows_commands_and_keys(how: str) -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        if how == "?":  # typed with a table focused: it goes to the bar, Enter runs it
            app.action_focus_panes()
            await pilot.press("question_mark", "enter")
            await pilot.pause()
        else:
            await type_or_press(pilot, how == "typed", "help", "f1")
        assert isinstance(app.screen, HelpScreen)
        help_text = rendered(app.screen.table)
        assert "upload PATH" in help_text and "pause [upload|reconstruct]" in help_text
        assert "F10" in help_text and "F8 or ^l" in help_text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


@run_async
async def test_clear_empties_the_log() -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        assert log_text(app)
        await type_command(pilot, "clear")
        assert log_text(app) == ""


@run_async
async def test_show_and_f6_switch_panes_at_80x24() -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        upload, recon = app.query_one("#upload-pane"), app.query_one("#reconstruct-pane")
        assert upload.display and not recon.display
        await type_command(pilot, "show reconstruct")
        assert recon.display and not upload.display
        await pilot.press("f6")
        await pilot.pause()
        assert upload.display and not recon.display


def test_layout_follows_the_terminal_size() -> None:
    assert choose_layout(80, 24) == "tabs"
    assert choose_layout(120, 40) == "stacked"
    assert choose_layout(200, 50) == "side"


@run_async
async def test_quit_drains_with_a_visible_count_then_exits() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        up.set(pending_deliveries=120)
        await type_command(pilot, "quit")
        assert "request_stop" in up.calls and "request_stop" in rec.calls
        status = str(app.query_one("#status").render())
        assert "draining: 120 chunks still in flight" in status
        up.deliver(100)
        app.refresh_view()
        assert "draining: 20 chunks" in str(app.query_one("#status").render())
        assert app.is_running
        up.deliver(20)
        app.refresh_view()
        await pilot.pause()
    assert app.return_code == 0
    assert "force_stop" not in up.calls


@run_async
async def test_second_quit_forces_and_exits() -> None:
    before = set(threading.enumerate())
    app, up, rec = make_app()
    async with settled(app) as pilot:
        up.set(pending_deliveries=50)
        await pilot.press("f10")
        await pilot.pause()
        assert up.snapshot().state == "draining"
        await pilot.press("f10")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert "force_stop" in up.calls
    assert app.return_code == 1
    assert up.stopped and rec.stopped
    for thread in set(threading.enumerate()) - before:  # start and quit workers are done
        if thread.name.startswith("asyncio_"):
            continue  # the event loop's own executor: asyncio.run shuts it down
        thread.join(timeout=5)
        assert not thread.is_alive(), thread


@run_async
async def test_ctrl_c_quits_like_quit_even_in_the_command_bar() -> None:
    app, up, _rec = make_app()
    async with settled(app) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert "request_stop" in up.calls and app.return_code == 0


@run_async
async def test_quit_with_no_service_running_exits_at_once() -> None:
    app = MsiTuiApp(make_context(None, None))
    async with settled(app) as pilot:
        await type_command(pilot, "q")
    assert app.return_code == 0


@run_async
async def test_start_error_is_shown_and_the_app_keeps_running() -> None:
    up = FakeUploader(start_error="broker kafka-1.lab:9092 unreachable: connection refused")
    app, up, rec = make_app(up)
    async with settled(app, (120, 40)) as pilot:
        pane = app.query_one(UploadPane)
        assert pane.has_class("-error")
        assert "connection refused" in str(pane.query_one(".error-banner").render())
        assert "upload could not start: broker" in log_text(app)
        await type_command(pilot, "check")
        assert "upload: not running" in log_text(app)
        await type_command(pilot, "quit")  # only the reconstructor needs stopping
    assert up.calls == ["start"] and "request_stop" in rec.calls


@run_async
async def test_quit_while_a_service_is_still_starting_stops_it_once_started() -> None:
    up, gate = FakeUploader(), threading.Event()
    up.start_gate = gate
    app, up, _rec = make_app(up)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await type_command(pilot, "quit")
        assert "request_stop" not in up.calls
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        app.refresh_view()
        await pilot.pause()
    assert up.calls[-1] == "request_stop" and app.return_code == 0


@run_async
async def test_engine_events_reach_the_log_and_the_log_file(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "msi-tui.log"
    app, _up, _rec = make_app(log_path=log_path)
    async with settled(app, (120, 40)) as pilot:
        app.context.events(FileUploaded(path="a.bin", size=2_000_000, chunks=2,
                                        upload_id="u1", seconds=1.0, at=FIXED_NOW))
        app.refresh_view()
        assert "uploaded a.bin (2.00 MB in 1.0 s, 2.0 MB/s)" in log_text(app)
        await type_command(pilot, "log")
        assert str(log_path) in log_text(app)
    history = log_path.read_text()
    assert "OK    uploaded a.bin" in history


def test_event_buffer_is_bounded_and_counts_drops() -> None:
    buffer = EventBuffer(capacity=3)
    for i in range(5):
        buffer(FileUploaded(path=f"{i}", size=0, chunks=0, upload_id="u", seconds=0.0))
    events, dropped = buffer.drain()
    assert [e.path for e in events if isinstance(e, FileUploaded)] == ["2", "3", "4"] and dropped == 2
    assert buffer.drain() == ([], 0) and buffer.dropped_total == 2


@run_async
async def test_command_bar_completes_commands_and_paths(tmp_path: Path) -> None:
    (tmp_path / "scan-001.h5").write_bytes(b"")
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        bar = app.query_one(CommandBar)
        suggester = bar.suggester
        assert suggester is not None
        assert await suggester.get_suggestion("che") == "check"
        assert await suggester.get_suggestion("show rec") == "show reconstruct"
        assert await suggester.get_suggestion(f"upload {tmp_path}/sc") == f"upload {tmp_path}/scan-001.h5"
        bar.focus()
        await pilot.press(*"che", "right", "enter")
        await pilot.pause()
        assert "upload (watching): files enqueued" in log_text(app)
        await pilot.press("up")
        assert bar.value == "check"


@run_async
async def test_command_palette_runs_the_same_actions() -> None:
    app, up, _rec = make_app()
    async with settled(app, (120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Pause")
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.press("enter")
        await pilot.pause()
        assert "pause" in up.calls


@run_async
async def test_bindings_have_stable_ids_and_can_be_remapped() -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        ids = {b.id for b in MsiTuiApp.BINDINGS}  # type: ignore[union-attr]
        assert {"help", "check", "pause", "resume", "switch_pane", "quit"} <= ids
        app.set_keymap({"check": "f7"})
        await pilot.press("f7")
        await pilot.pause()
        assert "upload (watching): files enqueued" in log_text(app)
