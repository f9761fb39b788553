"""The files tables and one file's details: files in flight pinned at the top in a stable
order, numbers never cut at any width, each file's rate and time left, a steady pane rate,
and the detail view (Enter on a row, `show FILE`)."""

from __future__ import annotations

import dataclasses

import pytest
from rich.text import Text

from msi_tui.engine.stats import FileProgress
from msi_tui.formatting import short_count, short_duration, short_rate
from msi_tui.tui.app import MsiTuiApp
from msi_tui.tui.file_detail import FileDetailScreen
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.throughput import WINDOW_S, RateMeter
from msi_tui.tui.upload_pane import UploadPane
from tests.fake_engine import (
    BIG_FILE,
    FIXED_NOW,
    MB,
    SOURCE,
    FakeReconstructor,
    FakeUploader,
    make_context,
    mid_transfer_app,
    run_async,
    scene_mid_transfer,
    settled,
)
from tests.test_tui_commands import messages
from tests.test_tui_receipts import plain, table_rows

pytestmark = pytest.mark.timeout(60)
SIZES = [(80, 24), (120, 40), (200, 50)]


def screen_text(app: MsiTuiApp) -> str:
    """The detail screen's text, as the operator reads it."""
    import io

    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    screen = app.screen
    assert isinstance(screen, FileDetailScreen)
    console.print(screen.view)
    return console.export_text()


def big(done: int, total: int = 91_553, started: float = FIXED_NOW) -> FileProgress:
    return FileProgress(path="run-9/stack-overnight.h5", size=1_500_000_000, chunks_done=done,
                        chunks_total=total, state="sending", started=started, source=SOURCE,
                        upload_id="big", partition=4, history=(("sending", started),))


def small(i: int, at: float, finished: bool) -> FileProgress:
    return FileProgress(path=f"run-9/trace-{i:03d}.trc", size=2 * MB, chunks_done=123 if finished else 40,
                        chunks_total=123, state="done" if finished else "sending", started=at,
                        finished=at + 0.4 if finished else None, source=SOURCE, upload_id=f"s{i}",
                        history=(("sending", at),))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40", "200x50"])
@run_async
async def test_a_big_file_stays_pinned_while_small_files_complete_around_it(size: tuple[int, int]) -> None:
    up = FakeUploader()
    app = MsiTuiApp(make_context(up, None))
    async with settled(app, size) as pilot:
        table = app.main_screen.query_one(UploadPane).query_one(FilesTable)
        finished: list[FileProgress] = [small(100 + i, FIXED_NOW - 100 + i, True) for i in range(30)]
        at = FIXED_NOW
        for i in range(20):  # 20 small files start after the big one and complete around it
            at += 1.0
            sending = small(i, at, False)
            up.set(taken_at=at + 0.2, files=(big(2_000 * (i + 1)), *finished, sending))
            app.refresh_view()
            await pilot.pause()
            assert table.shown_files[0].path == "run-9/stack-overnight.h5"
            assert table.shown_files[1].path == sending.path  # in flight: pinned, in start order
            assert table.fixed_rows == 2 and table.scroll_y == 0
            finished.append(dataclasses.replace(sending, state="done", chunks_done=123, finished=at + 0.5))
            up.set(taken_at=at + 0.6, files=(big(2_000 * (i + 1) + 1_000), *finished))
            app.refresh_view()
            await pilot.pause()
            assert table.shown_files[0].path == "run-9/stack-overnight.h5" and table.fixed_rows == 1
            assert table.shown_files[1].path == sending.path  # the newest outcome next
        table.focus()  # the operator scrolls down the outcomes: the big file stays on screen
        await pilot.pause()
        table.scroll_end(animate=False)
        await pilot.pause()
        assert table.fixed_rows == 1 and table.shown_files[0].path == "run-9/stack-overnight.h5"


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40", "200x50"])
@run_async
async def test_no_number_is_ever_cut(size: tuple[int, int]) -> None:
    up = FakeUploader()
    app = MsiTuiApp(make_context(up, FakeReconstructor()))
    async with settled(app, size) as pilot:
        rows = (big(7_552, 19_200), dataclasses.replace(big(64_000, 64_000), upload_id="b2", path="b2.h5"),
                dataclasses.replace(big(11_728, 640_000), upload_id="b3", path="b3.h5", size=10_485_760_000),
                dataclasses.replace(big(1, 2), upload_id="b4", path="b4.h5", size=999_999_999))
        up.set(taken_at=FIXED_NOW + 3_700, files=rows, state="watching")
        app.refresh_view()
        await pilot.pause()
        app.refresh_view()
        await pilot.pause()
        table = app.main_screen.query_one(UploadPane).query_one(FilesTable)
        widths = dict(table.layout_now)
        for row in table_rows(table).values():
            for column, cell in row.items():
                if column not in ("file", "where"):  # (names are shortened with a leading …)
                    assert len(plain(cell)) <= widths[column], (column, plain(cell), widths[column])
                    assert "…" not in plain(cell)
        if "chunks" in widths:
            assert plain(table_rows(table)["run-9/stack-overnight.h5"]["chunks"]) == "7.5k/19.2k"
    assert [short_count(n) for n in (7_552, 19_200, 64_000, 640_000, 11_728)] == [
        "7.5k", "19.2k", "64.0k", "640k", "11.7k"]
    assert max(len(short_rate(r)) for r in (0, 999.6e3, 9.96e6, 183e6, 2.5e9)) <= 8
    assert max(len(short_duration(s)) for s in (0, 59, 3599, 3600, 359_999, 10**7)) <= 5


@run_async
async def test_files_in_flight_show_their_rate_and_time_left() -> None:
    app = mid_transfer_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await scene_mid_transfer(pilot)
        rows = table_rows(app.main_screen.query_one(UploadPane).query_one(FilesTable))
        # The big file gained 305 chunks of 16 KiB each 0.2 s: 25 MB/s; 34,953 chunks left.
        assert plain(rows[BIG_FILE]["rate"]) == "25 MB/s"
        assert plain(rows[BIG_FILE]["eta"]) == "0:23"
        assert plain(rows["run-0412/scan-044.h5"]["rate"]) == "2.6 MB/s"
        # Done in under RATE_AFTER_S: no rate worth showing, and no time left.
        assert plain(rows["run-0412/scan-042.h5"]["rate"]) == "" == plain(rows["run-0412/scan-042.h5"]["eta"])


def test_the_pane_rate_is_steady_over_its_window() -> None:
    meter = RateMeter()
    total, at = 0, 0.0
    for _ in range(int(WINDOW_S * 5) + 5):  # 100 MB/s, 5 readings a second
        total, at = total + 20 * MB, at + 0.2
        meter.update(total, at)
    assert meter.rate == pytest.approx(100 * MB)
    total, at = total + 60 * MB, at + 0.2  # one burst (300 MB/s for 0.2 s, e.g. after resume)
    rate = meter.update(total, at)
    assert rate is not None and rate < 110 * MB  # the figure barely moves...
    assert max(meter.samples) == pytest.approx(300 * MB)  # ...the sparkline shows the burst
    meter.update(0, at + 0.2)  # the service restarted: counts from there, no negative rate
    assert meter.rate is None or meter.rate >= 0


# --- one file's details --------------------------------------------------------------------

@run_async
async def test_enter_on_a_row_opens_the_files_details_and_esc_closes_them() -> None:
    app = mid_transfer_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await scene_mid_transfer(pilot)
        table = app.main_screen.query_one("#upload-files", FilesTable)
        await pilot.press("escape")  # the keys to the table
        await pilot.pause()
        assert app.focused is table
        await pilot.press("down")  # the second row: the big file (in flight, pinned)
        await pilot.pause()
        row = table.highlighted()
        assert row is not None and row.path == BIG_FILE
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FileDetailScreen)
        text = screen_text(app)
        for expected in (BIG_FILE, "source       scope-7", "1.50 GB (1,500,000,000 bytes)",
                         "chunks       56,600 of 91,553 (61 %), 56.6k/91.5k", "partition    4",
                         "upload id    id-stack-overnight", "sending (in flight)", "12:00:48.1  sending",
                         "reconstruct", "receiving (in flight)", "51,000 of 91,553"):
            assert expected in text, expected
        up = app.context.uploader
        assert isinstance(up, FakeUploader)
        up.advance(BIG_FILE, 1_000)  # the view follows the file
        app.refresh_view()
        await pilot.pause()
        assert "57,600 of 91,553" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen


@run_async
async def test_show_file_opens_its_details_with_every_stage() -> None:
    app = mid_transfer_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await scene_mid_transfer(pilot)
        app.run_command("show calib-07.h5")
        await pilot.pause()
        assert isinstance(app.screen, FileDetailScreen)
        text = screen_text(app)
        for expected in ("run-0412/calib-07.h5", "6.00 MB (6,000,000 bytes)", "6 of 6 (100 %)",
                         "outcome      quarantined there", "why          digest mismatch",
                         "11:59:06.0  sending", "11:59:07.0  sent  +1.0 s", "11:59:07.6  quarantined there  +0.6 s",
                         "in all 1.6 s", "outcome      quarantined", "11:59:07.5  quarantined  +0.5 s"):
            assert expected in text, expected
        await pilot.press("q")  # no text goes here: a single key closes it
        await pilot.pause()
        assert app.screen is app.main_screen
        app.run_command("show run-0412/scan-042.h5")
        await pilot.pause()
        text = screen_text(app)
        assert "where        archive-1:/data/received/run-0412/scan-042.h5" in text and "verified" in text
        await pilot.press("escape")
        await pilot.pause()


@run_async
async def test_show_names_the_matches_or_says_there_is_none() -> None:
    app = mid_transfer_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await scene_mid_transfer(pilot)
        app.run_command("show scan-04")
        app.run_command("show nothing-like-it.h5")
        await pilot.pause()
        assert app.screen is app.main_screen
        text = " ".join(messages(app))
        assert "show: 4 files match 'scan-04': run-0412/scan-041.h5, run-0412/scan-042.h5" in text
        assert "show: no file 'nothing-like-it.h5'" in text


def test_a_table_without_files_has_no_rates() -> None:
    table = FilesTable()
    assert table.rates.rate(big(0), FIXED_NOW) is None  # just started
    assert isinstance(Text(short_rate(None)), Text)
