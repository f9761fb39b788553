"""What the operator sees, as SVG snapshots at 80x24 and 120x40 (pytest-textual-snapshot).

Deterministic: a scripted fake engine with its own time, a fixed clock, UTC timestamps and no
cursor blink. Update with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at
the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from msi_tui.tui.app import MsiTuiApp
from tests.fake_engine import (
    FakeUploader,
    make_context,
    mid_transfer_app,
    scene_check,
    scene_errors_only,
    scene_file_detail,
    scene_mid_transfer,
    scene_quit_confirming,
    scene_quit_draining,
    settle,
    utc,  # noqa: F401  (fixture)
)

pytestmark = [pytest.mark.usefixtures("utc"), pytest.mark.timeout(60)]
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
def test_both_panes_mid_transfer(snap_compare, size: tuple[int, int]) -> None:
    """80x24 shows the Upload tab; 120x40 stacks both panes. The 1.5 GB file and scan-044 are
    in flight, pinned at the top with their rate and time left."""
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_mid_transfer)


def test_reconstruct_tab_mid_transfer_80x24(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await scene_mid_transfer(pilot)
        pilot.app.run_command("show reconstruct")
        await pilot.pause()

    assert snap_compare(mid_transfer_app(), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_check_output(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_check)


@pytest.mark.parametrize("size", SIZES)
def test_file_detail(snap_compare, size: tuple[int, int]) -> None:
    """`show stack-overnight.h5`: both sides of the file in flight, in full."""
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_file_detail)


@pytest.mark.parametrize("size", SIZES)
def test_errors_only(snap_compare, size: tuple[int, int]) -> None:
    """F5: the log shows only warnings and errors; its title counts them."""
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_errors_only)


@pytest.mark.parametrize("size", SIZES)
def test_quit_asks_while_files_are_sent(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_quit_confirming)


@pytest.mark.parametrize("size", SIZES)
def test_quit_draining(snap_compare, size: tuple[int, int]) -> None:
    """The status line counts the chunks still in flight."""
    assert snap_compare(mid_transfer_app(), terminal_size=size, run_before=scene_quit_draining)


@pytest.mark.parametrize("size", SIZES)
def test_start_error_shown(snap_compare, size: tuple[int, int]) -> None:
    """A broker that cannot be reached: a red banner in the pane, a line in the log."""
    error = "cannot reach kafka-1.lab:9092 within 10 s (connection refused); is the broker up?"
    app = MsiTuiApp(make_context(FakeUploader(start_error=error), None))
    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_help_screen_80x24(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        pilot.app.run_command("help")
        await pilot.pause()

    assert snap_compare(mid_transfer_app(), terminal_size=(80, 24), run_before=run_before)
