"""Write SVG screenshots of the app at work into screenshots/ (for the README).

    python scripts/screenshots.py [OUTPUT_DIR]

The app runs headless on the scripted fake engine of the tests (tests/fake_engine.py), so
the pictures are the same on every machine and need no broker.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_engine import (  # noqa: E402  (after the path tweak)
    mid_transfer_app,
    scene_check,
    scene_errors_only,
    scene_file_detail,
    scene_mid_transfer,
    scene_quit_confirming,
    scene_quit_draining,
    use_utc_process_wide,
)

Scene = Callable[[object], Awaitable[None]]

SHOTS: list[tuple[str, tuple[int, int], Scene]] = [
    ("mid-transfer-200x50", (200, 50), scene_mid_transfer),
    ("mid-transfer-120x40", (120, 40), scene_mid_transfer),
    ("mid-transfer-80x24", (80, 24), scene_mid_transfer),
    ("check-120x40", (120, 40), scene_check),
    ("file-detail-80x24", (80, 24), scene_file_detail),
    ("errors-only-120x40", (120, 40), scene_errors_only),
    ("quit-asks-120x40", (120, 40), scene_quit_confirming),
    ("quit-draining-120x40", (120, 40), scene_quit_draining),
]


async def take(name: str, size: tuple[int, int], scene: Scene, out: Path) -> Path:
    """Run the app at `size`, play `scene`, save the screen as out/name.svg."""
    app = mid_transfer_app()
    async with app.run_test(size=size) as pilot:
        await scene(pilot)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        path = Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
        app.exit_with(0)
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    use_utc_process_wide()
    for name, size, scene in SHOTS:
        print(asyncio.run(take(name, size, scene, out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
