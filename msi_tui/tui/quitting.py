"""Quit: drain with a visible count, a second quit forces, signals take the same path."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Literal

from textual import work

from msi_tui.tui.pane import Line

if TYPE_CHECKING:
    from msi_tui.engine.service import Service
    from msi_tui.tui.app import MsiTuiApp

    _Base = MsiTuiApp
else:
    _Base = object

QuitPhase = Literal["running", "draining", "forcing", "exiting"]
FORCED_WAIT = 5.0  # seconds a forced stop may take to close producers and consumers


class QuitMixin(_Base):
    """Quit handling of `MsiTuiApp` (split out to keep each module small)."""

    quit_phase: QuitPhase = "running"

    def action_quit(self) -> None:  # type: ignore[override]
        """First quit drains every running service; a second one forces; a third exits."""
        if self.quit_phase == "draining":
            self.force_quit()
            return
        if self.quit_phase in ("forcing", "exiting"):
            self.exit_with(1 if self.quit_phase == "forcing" else 0)
            return
        active = [s for s in self.slots.values() if s.active]
        if not active:
            self.exit_with(0)
            return
        self.quit_phase = "draining"
        for slot in active:
            assert slot.service is not None
            if slot.status == "starting":
                slot.stop_requested = True  # request_stop() once start() returns
            else:
                slot.service.request_stop()
        self.emit("warning", "quit: finishing in-flight chunks; quit again (F10) to force")
        self.refresh_view()

    def exit_with(self, code: int) -> None:
        """Exit with `code` as both the app's result and its return code."""
        self.exit(code, return_code=code)

    def force_quit(self) -> None:
        """Stop now, giving up whatever has not been delivered, then exit."""
        self.quit_phase = "forcing"
        pending = self._pending_deliveries()
        services: list[Service] = []
        for slot in self.slots.values():
            if slot.active and slot.service is not None:
                slot.service.force_stop()
                services.append(slot.service)
        given_up = f"; {pending:,} chunks given up" if pending else ""
        self.emit("error", f"quit forced{given_up}")
        self.refresh_view()
        self._wait_then_exit(services, 1 if pending else 0)

    @work(thread=True, exit_on_error=False, group="quit")
    def _wait_then_exit(self, services: list[Service], code: int) -> None:
        # wait_stopped blocks, so it runs here; the bound keeps a stuck engine from
        # holding the terminal, and exiting after it leaves no engine thread behind.
        for service in services:
            service.wait_stopped(timeout=FORCED_WAIT)
        self.call_from_thread(self.exit_with, code)

    def _pending_deliveries(self) -> int:
        up = self.slots["upload"]
        if up.status == "running" and self.context.uploader is not None:
            return self.context.uploader.snapshot().pending_deliveries
        return 0

    def show_quit_progress(self, pending: int | None) -> None:
        """Called by every refresh: the draining line, and the exit once all have stopped."""
        status = self.main_screen.query_one("#status", Line)
        if self.quit_phase == "running":
            status.set_class(False, "-visible")
            return
        status.set_class(True, "-visible")
        if self.quit_phase == "forcing":
            status.set("forcing stop: closing the connections…")
            return
        if self.quit_phase == "exiting":
            status.set("all services stopped: exiting")
            return
        if pending:
            status.set(f"draining: {pending:,} chunks still in flight · quit again (F10) to force")
        else:
            status.set("stopping: committing and closing · quit again (F10) to force")
        if not any(s.active for s in self.slots.values()):
            self.quit_phase = "exiting"
            status.set("all services stopped: exiting")
            self.emit("success", "all services stopped; nothing left in flight")
            self.exit_with(0)

    # --- signals ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT (e.g. `kill`, systemd) quit like the operator would."""
        if self.is_headless:
            return  # tests and screenshots: leave the test runner's handlers alone
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.action_quit)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows, or not the main thread: keys still quit

    def remove_signal_handlers(self) -> None:
        if self.is_headless:
            return
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
