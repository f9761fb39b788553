"""Sources and receipts on screen: the Upload pane says which source it sends as and, per
file, whether it is only sent, verified at the destination (and where), or failed there; the
Reconstruct pane says which source sent each file. At 80x24 and at 120x40."""

from __future__ import annotations

import dataclasses

import pytest
from rich.text import Text

from msi_tui.tui.app import MsiTuiApp
from msi_tui.tui.files_table import FilesTable, display_where
from msi_tui.tui.reconstruct_pane import ReconstructPane
from msi_tui.tui.upload_pane import UploadPane
from tests.fake_engine import (
    DESTINATION,
    OTHER_SOURCE,
    QUARANTINE_REASON,
    SOURCE,
    FakeUploader,
    make_app,
    make_context,
    mid_transfer_reconstruct,
    mid_transfer_upload,
    run_async,
    settled,
)

pytestmark = pytest.mark.timeout(60)


def table_rows(table: FilesTable) -> dict[str, dict[str, Text | str]]:
    """Every row of a files table as {file: {column: cell}}, the file as its full path."""
    columns = [key for key, _ in table.layout_now]
    return {f.path: dict(zip(columns, table.get_row(key), strict=False))
            for f, key in zip(table.shown_files, table.rows, strict=False)}


def plain(cell: Text | str) -> str:
    return cell.plain if isinstance(cell, Text) else cell


async def scene(pilot) -> tuple[FilesTable, FilesTable]:
    """Both panes mid-transfer, the app already settled."""
    app = pilot.app
    mid_transfer_upload(app.context.uploader)
    mid_transfer_reconstruct(app.context.reconstructor)
    app.refresh_view()
    await pilot.pause()
    app.refresh_view()  # the tables have their width now: the final layout
    await pilot.pause()
    return (app.main_screen.query_one(UploadPane).query_one(FilesTable),
            app.main_screen.query_one(ReconstructPane).query_one(FilesTable))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@run_async
async def test_verified_and_failed_there_files_and_sources_show(size: tuple[int, int]) -> None:
    app, _up, _rec = make_app()
    async with settled(app, size) as pilot:
        upload, reconstruct = await scene(pilot)
        pane = app.main_screen.query_one(UploadPane)
        assert pane.border_title == f"Upload as {SOURCE}"
        receipts = str(pane.query_one("#upload-receipts").render())
        assert "verified 38 · awaiting 2 · failed there 1" in receipts

        rows = table_rows(upload)
        verified, failed_there = rows["run-0412/scan-042.h5"], rows["run-0412/calib-07.h5"]
        assert plain(rows["run-0412/scan-043.h5"]["state"]) == "sent"  # delivered, no receipt yet
        assert plain(verified["state"]) == "verified"
        assert "green" in str(verified["state"].style)  # type: ignore[union-attr]
        assert plain(failed_there["state"]) == "quarantined there"
        assert "red" in str(failed_there["state"].style)  # type: ignore[union-attr]
        where = f"{DESTINATION}:/data/received/run-0412/scan-042.h5"
        if size[0] >= 120:  # room for a column: where each file went, at a glance
            assert upload.shows_where
            assert plain(verified["where"]) in (where, f"{DESTINATION}:…/run-0412/scan-042.h5")
            assert plain(failed_there["where"]).startswith("digest mismatch")
        else:  # no room: a hint, and the highlighted row's where on the pane's bottom border
            assert not upload.shows_where and "where" not in verified
            assert "each file in full" in pane.detail_shown.plain
        upload.focus()
        upload.move_cursor(row=list(rows).index("run-0412/scan-042.h5"))
        await pilot.pause()
        assert pane.detail_shown.plain == f"verified at {where}"
        upload.move_cursor(row=list(rows).index("run-0412/calib-07.h5"))
        await pilot.pause()
        detail = pane.detail_shown.plain
        assert detail.startswith("run-0412/calib-07.h5 · quarantined there: digest mismatch")
        assert QUARANTINE_REASON.startswith(detail.split(": ", 1)[1].rstrip("…"))
        assert "red" in str(pane.detail_shown.get_style_at_offset(pilot.app.console, detail.index("quarantined")))

        if size[0] < 120:
            app.run_command("show reconstruct")
            await pilot.pause()
        sources = {path: plain(row["source"]) for path, row in table_rows(reconstruct).items()}
        assert sources["run-0412/scan-042.h5"] == SOURCE
        assert sources["run-0098/trace_01.trc"] == OTHER_SOURCE


@run_async
async def test_receipts_unavailable_is_said_and_files_stay_sent() -> None:
    up = FakeUploader()
    app = MsiTuiApp(make_context(up, None))
    async with settled(app) as pilot:
        mid_transfer_upload(up)
        up.set(receipts="unavailable (not authorised to read the topic)", files_verified=0,
               awaiting_receipt=0, files_failed_there=0,
               files=tuple(f for f in up.snapshot().files if f.state != "verified" and not f.where))
        app.refresh_view()
        await pilot.pause()
        receipts = str(app.main_screen.query_one("#upload-receipts").render())
        assert receipts == "receipts unavailable (not authorised to read the topic)"
        rows = table_rows(app.main_screen.query_one(UploadPane).query_one(FilesTable))
        assert plain(rows["run-0412/scan-043.h5"]["state"]) == "sent"


@run_async
async def test_an_uploader_without_a_source_and_files_without_one() -> None:
    """Older uploaders sent no source: the title stays plain and the column shows a dash."""
    app, _up, rec = make_app(FakeUploader(source=""))
    async with settled(app, (120, 40)) as pilot:
        _, reconstruct = await scene(pilot)
        assert app.main_screen.query_one(UploadPane).border_title == "Upload"
        rec.set(files=tuple(dataclasses.replace(f, source="") for f in rec.snapshot().files))
        app.refresh_view()
        await pilot.pause()
        assert {plain(row["source"]) for row in table_rows(reconstruct).values()} == {"–"}


def test_a_where_too_long_keeps_its_host_and_file_name() -> None:
    where = f"{DESTINATION}:/data/received/run-0412/deep/folder/scan-042.h5"
    for width in (24, 30, 40):
        shown = display_where(where, width)
        assert len(shown) <= width and shown.startswith(f"{DESTINATION}:…/") and shown.endswith("scan-042.h5")
    assert display_where(where, len(where)) == where
    assert display_where(QUARANTINE_REASON, 20) == QUARANTINE_REASON[:19] + "…"
