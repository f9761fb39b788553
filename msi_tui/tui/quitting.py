"""Quit: asks first while a file is being sent, drains with a visible count, a further quit
forces; signals drain at once (a service manager does not answer questions)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Literal

from msi_tui.engine.service import Service
from msi_tui.formatting import CUT_SHORT, fraction_done, latest_by_path, plural
from msi_tui.tui.host import AppHost
from msi_tui.tui.pane import Line

QuitPhase = Literal["running", "confirming", "draining", "forcing", "exiting"]
FORCED_WAIT = 5.0  # seconds a forced stop may take to close producers and consumers
CONFIRM_S = 10.0  # a quit waiting for its confirmation is forgotten after this long


class QuitControl:
    """The app's way out, one phase at a time: running, (confirming,) draining, forcing,
    exiting. `request()` is every quit the operator asks for (F10, ctrl+c, `quit`)."""

    def __init__(self, app: AppHost) -> None:
        self.app = app
        self.phase: QuitPhase = "running"
        self._confirm_until = 0.0

    def request(self) -> None:
        """First quit drains every running service (or, while a file is being sent, asks
        first); the next one forces; one more exits."""
        if self.phase == "draining":
            self.force()
            return
        if self.phase in ("forcing", "exiting"):
            self.app.exit_with(1 if self.phase == "forcing" else 0)
            return
        sending = self.files_being_sent()
        if self.phase == "running" and sending:
            self.phase = "confirming"
            self._confirm_until = time.monotonic() + CONFIRM_S
            self.app.emit("warning", f"quit: {self._naming(sending)} would be cut short and withdrawn (a watched "
                                     "folder's files are sent again at the next start): quit again (F10) to quit "
                                     "anyway, any other command to go on")
            self.app.refresh_view()
            return
        self.drain()

    def cancel(self) -> None:
        """Any other command: the quit waiting for confirmation is off."""
        if self.phase == "confirming":
            self.phase = "running"
            self.app.emit("info", "quit cancelled")

    def files_being_sent(self) -> list[str]:
        """`name 9 %` of each upload in flight (nothing for the reconstructor: what it has
        not finished is read again at its next start, nothing is lost by quitting)."""
        slot = self.app.slots["upload"]
        if slot.status != "running" or self.app.context.uploader is None:
            return []
        files = self.app.context.uploader.snapshot().files
        return [f"{f.path} {int(100 * f.chunks_done / f.chunks_total) if f.chunks_total else 100} %"
                for f in sorted(files, key=lambda f: f.started) if f.finished is None]

    @staticmethod
    def _naming(files: list[str]) -> str:
        named = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        return f"{'a file' if len(files) == 1 else f'{len(files)} files'} being sent ({named})"

    def drain(self) -> None:
        """Stop taking new work, deliver or commit what is in flight, then exit."""
        active = [s for s in self.app.slots.values() if s.active]
        if not active:
            self.app.exit_with(0)
            return
        self.phase = "draining"
        for slot in active:
            assert slot.service is not None
            if slot.status == "starting":
                slot.stop_requested = True  # request_stop() once start() returns
            else:
                slot.service.request_stop()
        self.app.emit("warning", "quit: finishing in-flight chunks; quit again (F10) to force")
        self.app.refresh_view()

    def force(self) -> None:
        """Stop now, giving up whatever has not been delivered, then exit."""
        self.phase = "forcing"
        pending = self.pending_deliveries()
        services: list[Service] = []
        for slot in self.app.slots.values():
            if slot.active and slot.service is not None:
                slot.service.force_stop()
                services.append(slot.service)
        given_up = f"; {pending:,} chunks given up" if pending else ""
        self.app.emit("error", f"quit forced{given_up}")
        self.app.refresh_view()
        code = 1 if pending else 0
        self.app.run_worker(lambda: self._wait_then_exit(services, code), thread=True,
                            exit_on_error=False, group="quit")

    def _wait_then_exit(self, services: list[Service], code: int) -> None:
        # In a thread: wait_stopped blocks; the bound keeps a stuck engine from holding the
        # terminal, and exiting after it leaves no engine thread behind.
        for service in services:
            service.wait_stopped(timeout=FORCED_WAIT)
        self.app.call_from_thread(self.app.exit_with, code)

    def pending_deliveries(self) -> int:
        up = self.app.slots["upload"]
        if up.status == "running" and self.app.context.uploader is not None:
            return self.app.context.uploader.snapshot().pending_deliveries
        return 0

    def show_progress(self, status: Line, pending: int | None) -> None:
        """Called by every refresh: the status line, and the exit once all have stopped."""
        if self.phase == "confirming" and time.monotonic() > self._confirm_until:
            self.phase = "running"
        if self.phase == "running":
            status.set_class(False, "-visible")
            return
        status.set_class(True, "-visible")
        if self.phase == "confirming":
            sending = self.files_being_sent()
            if not sending:  # it finished meanwhile: nothing to cut short any more
                self.drain()
                return
            n = len(sending)
            status.set(f"quit? {'1 file' if n == 1 else f'{n} files'} being sent would be cut short · "
                       "quit again (F10) to quit anyway")
            return
        if self.phase == "forcing":
            status.set("forcing stop: closing the connections…")
            return
        if self.phase == "exiting":
            status.set("all services stopped: exiting")
            return
        if pending:
            status.set(f"draining: {pending:,} chunks still in flight · quit again (F10) to force")
        else:
            status.set("stopping: committing and closing · quit again (F10) to force")
        if not any(s.active for s in self.app.slots.values()):
            self.phase = "exiting"
            status.set("all services stopped: exiting")
            unfinished = self.unfinished()
            if unfinished:
                self.app.emit("warning", f"all services stopped; unfinished: {', '.join(unfinished)}")
            else:
                self.app.emit("success", "all services stopped; nothing cut short or half-received")
            self.app.exit_with(0)

    def unfinished(self) -> list[str]:
        """`name 9 %` of each file a service stopped without finishing (cut short, queued or
        still being received), from their last snapshots."""
        found = []
        if self.app.context.uploader is not None and self.app.slots["upload"].status == "running":
            snap = self.app.context.uploader.snapshot()
            found += [f"{f.path} {int(fraction_done(f) * 100)} %" for f in latest_by_path(snap.files)
                      if f.state in CUT_SHORT or f.finished is None]
            if snap.files_queued:
                found.append(f"{plural(snap.files_queued, 'file')} queued")
        if self.app.context.reconstructor is not None and self.app.slots["reconstruct"].status == "running":
            found += [f"{f.path} {int(fraction_done(f) * 100)} % received"
                      for f in self.app.context.reconstructor.snapshot().files if f.finished is None]
        return found

    # --- signals ---------------------------------------------------------------------

    def on_signal(self) -> None:
        """SIGTERM or SIGINT (`kill`, systemd): drain at once, force at the second."""
        if self.phase in ("running", "confirming"):
            self.drain()
        else:
            self.request()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT quit like the operator would, without asking."""
        if self.app.is_headless:
            return  # tests and screenshots: leave the test runner's handlers alone
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.on_signal)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # Windows, or not the main thread: keys still quit

    def remove_signal_handlers(self) -> None:
        if self.app.is_headless:
            return
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
