"""Honest status and a way out: warnings and errors in view with their counts, each service's
connection in the header, the help's glossary, and the exit summary printed to the shell
(by the app and at the end of a headless run) that names every file left unfinished."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msi_tui.engine.events import FileUploaded, Notice
from msi_tui.formatting import exit_summary
from msi_tui.tui.app import MsiTuiApp, summary_lines
from msi_tui.tui.glossary import GLOSSARY
from msi_tui.tui.header import ClusterHeader
from msi_tui.tui.help_screen import HelpScreen
from msi_tui.tui.log_panel import EventLog
from tests.fake_engine import (
    BIG_FILE,
    FIXED_NOW,
    FakeReconstructor,
    FakeUploader,
    make_app,
    make_context,
    mid_transfer_events,
    mid_transfer_reconstruct,
    mid_transfer_upload,
    run_async,
    settle,
    settled,
)
from tests.test_tui_commands import rendered, type_command

pytestmark = pytest.mark.timeout(60)


def log_lines(app: MsiTuiApp) -> list[str]:
    """The panel as shown (what F5 filters), one string per wrapped line."""
    return [strip.text.rstrip() for strip in app.main_screen.query_one(EventLog).lines]


# --- warnings and errors in view -------------------------------------------------------------

@run_async
async def test_f5_shows_only_warnings_and_errors_with_their_counts() -> None:
    app, _up, _rec = make_app()
    async with settled(app, (120, 40)) as pilot:
        log = app.main_screen.query_one(EventLog)
        mid_transfer_events(app.context.events)  # 1 warning, 2 errors among ordinary lines
        for i in range(50):  # a burst of ordinary lines does not push the errors out
            app.context.events(FileUploaded(path=f"f{i}", size=1, chunks=1, upload_id=f"u{i}", seconds=0.1,
                                            at=FIXED_NOW))
        app.refresh_view()
        await pilot.pause()
        assert log.title_text.plain == "Log  2 errors · 1 warning  F5: only these"
        await pilot.press("f5")
        await pilot.pause()
        assert log.problems_only and log.title_text.plain.startswith("Log: warnings and errors only  2 errors")
        shown = " ".join(log_lines(app))
        assert "rejected record p2@18331" in shown and "permission denied" in shown
        assert "quarantined at archive-1" in shown and "uploaded f1 " not in shown
        app.context.events(Notice(level="warning", message="Kafka unreachable, sending waits", at=FIXED_NOW))
        app.context.events(Notice(level="info", message="an ordinary line", at=FIXED_NOW))
        app.refresh_view()
        await pilot.pause()
        assert "Kafka unreachable" in " ".join(log_lines(app)) and "ordinary" not in " ".join(log_lines(app))
        assert "2 warnings" in log.title_text.plain
        await type_command(pilot, "errors")  # the command does the same: back to every line
        assert not log.problems_only and "an ordinary line" in " ".join(log_lines(app))
        await type_command(pilot, "clear")  # counts start again
        assert log.title_text.plain == "Log  0 errors · 0 warnings  F5: only these"


# --- each service's connection ---------------------------------------------------------------

@run_async
async def test_the_header_shows_the_worse_connection_and_which_service() -> None:
    app, up, rec = make_app()
    async with settled(app) as pilot:
        header = app.main_screen.query_one(ClusterHeader)
        up.set(connection="connected")
        rec.set(connection="unreachable")
        app.refresh_view()
        assert (header.connection, header.service) == ("unreachable", "reconstruct")
        assert "✗ reconstruct unreachable" in str(header.render())
        await type_command(pilot, "check")  # check says it per service
        text = " ".join(line.message for line in app.main_screen.query_one(EventLog).kept)
        assert "upload (watching):" in text and "Kafka connected" in text and "Kafka unreachable" in text
        rec.set(connection="connected")  # the engine's stats say the broker is back
        app.refresh_view()
        assert (header.connection, header.service) == ("connected", "")
        assert "● connected" in str(header.render())
        rec.set(connection="connecting")
        up.set(connection="unreachable")
        app.refresh_view()
        assert "✗ upload unreachable" in str(header.render())


# --- help ------------------------------------------------------------------------------------

@run_async
async def test_help_explains_every_counter_and_state_shown() -> None:
    app, _up, _rec = make_app()
    async with settled(app) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        words = {word for _, entries in GLOSSARY for word, _ in entries}
        text = rendered(app.screen.table)
        for word in ("sent", "verified", "awaiting", "failed there", "read", "lag", "pending", "quarantined",
                     "refused", "abandoned", "withdrawn", "handed over", "rejected", "receiving", "queued",
                     "sending", "failed", "stopped", "changed", "held", "blocked", "unreachable", "size",
                     "chunks", "done", "rate", "left", "where", "source", "MB/s", "units"):
            assert any(word in w for w in words), word
        assert "decimal: 1 kB = 1,000 bytes" in text and "averaged over the last 5 s" in text
        await pilot.press("q")  # nothing to type here: q closes
        await pilot.pause()
        assert app.screen is app.main_screen


@run_async
async def test_folders_are_shown_absolute() -> None:
    app = MsiTuiApp(make_context(FakeUploader(folder=Path("outbox")), None))
    async with settled(app):
        shown = str(app.main_screen.query_one("#upload-folder").render())
        assert f"folder {Path.cwd() / 'outbox'}" in shown


# --- the exit summary ------------------------------------------------------------------------

async def quit_mid_file(pilot) -> tuple[FakeUploader, FakeReconstructor]:
    """The scene, then quit (confirmed) while the big file is being sent: the uploader cuts
    it short, the reconstructor leaves its unfinished files for the next start."""
    app = pilot.app
    up, rec = app.context.uploader, app.context.reconstructor
    await settle(pilot)
    mid_transfer_upload(up)
    mid_transfer_reconstruct(rec)
    up.set(files_queued=0)
    app.refresh_view()
    app.run_command("quit")
    app.run_command("quit")  # yes: cut it short
    assert app.quitting.phase == "draining"
    up.finish(BIG_FILE, "stopped")
    up.finish("run-0412/scan-044.h5", "stopped")
    up.set(files_in_progress=0, files_failed=3)  # the engine counts a cut-short upload as failed
    up.deliver(318)
    app.refresh_view()
    await pilot.pause()
    return up, rec


@run_async
async def test_quitting_mid_file_names_it_in_the_log_and_the_summary(snapshot) -> None:
    app = MsiTuiApp(make_context(FakeUploader(), FakeReconstructor(), log_path=Path("/var/log/msi-tui.log")))
    app.log_file.path = None  # (nothing written to that path by the test)
    async with app.run_test(size=(80, 24)) as pilot:
        await quit_mid_file(pilot)
        last = app.main_screen.query_one(EventLog).kept[-1].message
    assert app.return_code == 0
    assert last.startswith("all services stopped; unfinished: run-0412/scan-044.h5 10 %, "
                           "run-0412/stack-overnight.h5 21 %")
    assert "nothing left" not in last
    lines = summary_lines(app)
    text = "\n".join(lines)
    assert "upload: 2 files cut short" in text
    assert "run-0412/stack-overnight.h5  21 % (20.0k/91.5k chunks of 1.50 GB), stopped" in text
    assert "reconstruct: 3 files unfinished" in text and "log: /var/log/msi-tui.log" in text
    assert "upload as scope-7: 41 files sent, 1 failed" in text
    assert "receipts: 38 verified at the destination, 2 awaiting, 1 failed there" in text
    assert max(len(line) for line in lines if not line.startswith("      ")) <= 80  # (file names aside)
    assert text == snapshot


def test_the_summary_never_says_nothing_is_left_while_a_file_was_cut_short() -> None:
    up, rec = FakeUploader(), FakeReconstructor()
    mid_transfer_upload(up)
    mid_transfer_reconstruct(rec)
    up.finish(BIG_FILE, "stopped")
    text = "\n".join(exit_summary(up.snapshot(), rec.snapshot(), None, group="msi-lab"))
    assert "nothing cut short" not in text
    assert "stack-overnight.h5" in text and "log: none" in text
    finished = FakeUploader()
    finished.set(files_done=3, files_verified=2)  # one given by hand: no receipt followed
    done = exit_summary(finished.snapshot(), None, None)
    assert "  upload: nothing cut short, nothing waiting" in done
    assert "    receipts: 2 verified at the destination, 0 awaiting, 1 given by hand not followed" in done
    assert "  upload: did not run: broker unreachable" in exit_summary("broker unreachable", None, None)
    many = FakeReconstructor()
    mid_transfer_reconstruct(many)
    only = exit_summary(None, many.snapshot(), None, limit=1)
    assert "    ... and 2 more" in "\n".join(only)


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_a_headless_run_ends_with_the_summary(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    """`upload DIR --headless` (a service's way to run) prints the summary when it quits."""
    import selectors

    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "scan-1.h5").write_bytes(os.urandom(200_000))
    env = {**os.environ, "MSI_TUI_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "msi_tui", "--bootstrap", kafka_bootstrap, "--topic", topic, "upload",
         str(folder), "--headless", "--settle-seconds", "0.2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 60
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not any(line.startswith("uploaded scan-1.h5") for line in seen):
                assert time.monotonic() < deadline and proc.poll() is None, seen
                if sel.select(timeout=1):
                    seen.append(proc.stdout.readline())
        out, err = proc.communicate("quit\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "msi-tui: summary" in out and "upload as " in out and "1 file sent" in out
    assert "upload: nothing cut short, nothing waiting" in out
    assert f"log: {tmp_path / 'state' / 'msi-tui.log'}" in out


@run_async
async def test_the_app_prints_the_summary_for_a_service_that_could_not_start() -> None:
    up = FakeUploader(start_error="cannot reach kafka-1.lab:9092")
    app = MsiTuiApp(make_context(up, None))
    async with settled(app) as pilot:
        await type_command(pilot, "quit")
    assert "  upload: did not run: cannot reach kafka-1.lab:9092" in summary_lines(app)


@run_async
async def test_the_connection_badge_shows_in_full_at_80_columns() -> None:
    context = make_context(FakeUploader(), FakeReconstructor(), cluster_name="tutorial_cluster",
                           bootstrap="127.0.0.1:19092", topic="instrument-files-of-the-night-shift-2026")
    app = MsiTuiApp(context)
    async with settled(app) as pilot:
        app.context.reconstructor.set(connection="unreachable")  # type: ignore[union-attr]
        app.context.uploader.set(connection="connected")  # type: ignore[union-attr]
        app.refresh_view()
        await pilot.pause()
        line = str(app.main_screen.query_one(ClusterHeader).render())
        assert line.rstrip().endswith("✗ reconstruct unreachable") and "…" in line
        assert len(line.rstrip()) <= 78


def test_in_the_app_a_file_cut_short_by_the_quit_is_a_warning() -> None:
    from msi_tui.engine.events import FileUploadFailed
    from msi_tui.engine.upload_job import STOPPED
    from msi_tui.tui.formatting import describe_in_app

    assert describe_in_app(FileUploadFailed(path="big.bin", reason=STOPPED)) == (
        "warning", "cut short by the quit: big.bin (withdrawn)")
    assert describe_in_app(FileUploadFailed(path="a.bin", reason="read error"))[0] == "error"
