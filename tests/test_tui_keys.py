"""The command bar takes text: the exact key sequences that used to misfire (issue 27, case 1),
typed key by key as a terminal sends them, and quit asking first while a file is being sent."""

from __future__ import annotations

import pytest

from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.commands import parse_command
from msi_tui.tui.files_table import FilesTable
from tests.fake_engine import (
    FakeReconstructor,
    FakeUploader,
    make_app,
    mid_transfer_reconstruct,
    mid_transfer_upload,
    run_async,
    settled,
)
from tests.test_tui_commands import log_text

pytestmark = pytest.mark.timeout(60)
ACTIONS = {"pause", "resume", "request_stop", "force_stop"}


async def type_keys(pilot, text: str, enter: bool = True) -> None:
    """Each character as its own key press (Pilot sends `slash` for "/", `space` for " ")."""
    await pilot.press(*text, *(["enter"] if enter else []))
    await pilot.pause()


def acted(up: FakeUploader, rec: FakeReconstructor) -> set[str]:
    """Service calls other than start: what a misfired key would have done."""
    return (set(up.calls) | set(rec.calls)) & ACTIONS


@run_async
async def test_f6_then_typing_a_path_types_it() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        assert app.front_pane == "reconstruct"
        assert isinstance(app.focused, CommandBar)  # F6 leaves the keys where they were
        await type_keys(pilot, "upload /tmp/some/path", enter=False)
        assert app.query_one(CommandBar).value == "upload /tmp/some/path"
        await pilot.press("enter")
        await pilot.pause()
        text = log_text(app)
        assert "upload /tmp/some/path: no such file" in text
        assert "unknown command" not in text and "paused" not in text
        assert acted(up, rec) == set()


@run_async
async def test_show_upload_after_show_reconstruct() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        upload, recon = app.query_one("#upload-pane"), app.query_one("#reconstruct-pane")
        await type_keys(pilot, "show reconstruct")
        assert recon.display and not upload.display
        assert isinstance(app.focused, CommandBar)
        await type_keys(pilot, "show upload")
        assert upload.display and not recon.display
        assert acted(up, rec) == set() and "paused" not in log_text(app)


@run_async
async def test_clear_typed_with_a_table_focused_clears_and_nothing_else() -> None:
    """c, l, e, a, r were check / ... / resume keys: typed on a table they are text now."""
    app, up, rec = make_app()
    async with settled(app) as pilot:
        await pilot.press("escape")  # from the bar to the table
        await pilot.pause()
        assert isinstance(app.focused, FilesTable)
        await type_keys(pilot, "clear")
        assert isinstance(app.focused, CommandBar)
        assert log_text(app) == "" and acted(up, rec) == set()


@pytest.mark.parametrize("prefix", [":", "/"])
@run_async
async def test_a_leading_colon_or_slash_is_ignored(prefix: str) -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        fronts = []
        for pane in ("reconstruct", "upload"):
            await type_keys(pilot, f"{prefix}show {pane}")
            fronts.append(app.front_pane)
        assert fronts == ["reconstruct", "upload"]
        assert "unknown command" not in log_text(app) and acted(up, rec) == set()
    assert parse_command(":show upload") == parse_command("show upload") == parse_command("/ show upload")


@pytest.mark.parametrize("where", ["bar", "table"])
@run_async
async def test_a_single_q_does_not_quit(where: str) -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        if where == "table":
            app.action_focus_panes()
            await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert app.is_running and app.return_code is None
        assert app.query_one(CommandBar).value == "q" and isinstance(app.focused, CommandBar)
        assert acted(up, rec) == set()


@run_async
async def test_keys_typed_on_a_table_go_to_the_bar_in_order() -> None:
    app, up, rec = make_app()
    async with settled(app, (120, 40)) as pilot:
        table = app.query_one("#reconstruct-files", FilesTable)
        table.focus()
        await pilot.pause()
        await type_keys(pilot, "pause upload", enter=False)
        bar = app.query_one(CommandBar)
        assert bar.value == "pause upload" and app.focused is bar
        assert acted(up, rec) == set()  # typed, not run
        await pilot.press("enter")
        await pilot.pause()
        assert acted(up, rec) == {"pause"} and "pause" in up.calls and "pause" not in rec.calls


@run_async
async def test_paste_on_a_table_goes_to_the_bar() -> None:
    from textual import events

    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        app.action_focus_panes()
        await pilot.pause()
        app.post_message(events.Paste("upload /data/run 1/a.h5"))  # as the terminal driver does
        await pilot.pause()
        assert app.query_one(CommandBar).value == "upload /data/run 1/a.h5"
        assert isinstance(app.focused, CommandBar)


@run_async
async def test_where_the_keys_go_is_always_shown() -> None:
    """The prompt lights up while the bar has the keys; a table's pane border while it has them."""
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        prompt, pane = app.query_one("#prompt"), app.query_one("#upload-pane")
        in_bar = (prompt.styles.color, pane.styles.border_top)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.focused, FilesTable)
        in_table = (prompt.styles.color, pane.styles.border_top)
        assert in_bar[0] != in_table[0] and in_bar[1] != in_table[1]
        assert "Enter details" in app.query_one(CommandBar).placeholder
        await pilot.press("f6")  # a table focused: the other pane's table takes the keys
        await pilot.pause()
        assert app.focused is app.query_one("#reconstruct-files")


# --- quit: asks first while a file is being sent ---------------------------------------------

@run_async
async def test_quit_with_a_file_being_sent_asks_first_then_drains() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        mid_transfer_upload(up)
        mid_transfer_reconstruct(rec)
        app.refresh_view()
        await type_keys(pilot, "quit")
        assert app.quitting.phase == "confirming" and acted(up, rec) == set()
        status = str(app.query_one("#status").render())
        assert "2 files being sent would be cut short" in status
        assert "run-0412/stack-overnight.h5 21 %" in log_text(app)
        await type_keys(pilot, "check")  # any other command: carry on
        assert str(app.quitting.phase) == "running" and "quit cancelled" in log_text(app)
        await pilot.press("f10")
        await pilot.pause()
        await pilot.press("f10")
        await pilot.pause()
        assert str(app.quitting.phase) == "draining" and "request_stop" in up.calls
        assert "force_stop" not in up.calls


@run_async
async def test_quit_with_nothing_being_sent_drains_at_once() -> None:
    app, up, _rec = make_app()
    async with settled(app) as pilot:
        up.set(pending_deliveries=5)  # chunks in flight, no file: nothing to cut short
        await type_keys(pilot, "quit")
        assert app.quitting.phase == "draining" and "request_stop" in up.calls


@run_async
async def test_a_signal_drains_without_asking() -> None:
    app, up, _rec = make_app()
    async with settled(app) as pilot:
        mid_transfer_upload(up)
        app.quitting.on_signal()
        await pilot.pause()
        assert app.quitting.phase == "draining" and "request_stop" in up.calls
