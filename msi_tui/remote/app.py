"""The app attached to running services: the same app, with detach instead of quit.

`AttachedApp` is `MsiTuiApp` over the proxies of msi_tui.remote.proxies, with three
differences, all here rather than in the app: F10 / `quit` / `detach` (and SIGTERM, SIGINT)
leave the app and the services running; `quit service` asks, then drains and stops them as
quit does in a session of their own; and a service that stops or vanishes is said in the log
and the app offers to exit.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from msi_tui.remote.proxies import RemoteService
from msi_tui.tui.app import MsiTuiApp
from msi_tui.tui.context import AppContext
from msi_tui.tui.pane import Line
from msi_tui.tui.quitting import QuitControl

DETACH_HELP = "leave the app; the services keep running"
QUIT_SERVICE_HELP = "drain and stop the attached services, for every client (asks first)"


class Confirm(ModalScreen[bool]):
    """A yes/no question: y or the first button says yes; n, escape or the second says no."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 64; max-width: 100%; height: auto; border: thick $error; padding: 1 2;
                         background: $surface; }
    Confirm Horizontal { height: auto; margin-top: 1; }
    Confirm Button { margin-right: 2; }
    """
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str, no: str) -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, id="question")
            with Horizontal():
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AttachCommands(Provider):
    """The palette's entries for detach and quit service (the app's own come from its provider)."""

    ENTRIES = (("Detach", DETACH_HELP, "detach"), ("Quit service", QUIT_SERVICE_HELP, "quit service"))

    async def discover(self) -> Hits:
        for title, help_text, line in self.ENTRIES:
            yield DiscoveryHit(title, partial(self.app.run_command, line), help=help_text)  # type: ignore[attr-defined]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, line in self.ENTRIES:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_command, line),  # type: ignore[attr-defined]
                          help=help_text)


class AttachedQuit(QuitControl):
    """Quitting as the attached app means it: F10, ctrl+c, `quit`, SIGTERM and SIGINT leave
    the app and the services go on; only `quit service` drains and stops them."""

    def __init__(self, app: AttachedApp) -> None:
        super().__init__(app)
        self.attached_app = app

    def request(self) -> None:
        self.attached_app.detach()

    def on_signal(self) -> None:
        self.attached_app.detach()

    def stop_services(self) -> None:
        """`quit service`, once confirmed: drain and stop them; asked again while they drain, force."""
        if self.phase == "draining":
            self.force()
        else:
            self.drain()

    def show_progress(self, status: Line, pending: int | None) -> None:
        super().show_progress(status, pending)
        text = str(status._last or "")
        if "quit again (F10) to force" in text:  # the app's words, for this app's keys
            status.set(text.replace("quit again (F10) to force", "`quit service` again to force · F10 detaches"))


class AttachedApp(MsiTuiApp):
    """The app on services running in other processes."""

    COMMANDS = MsiTuiApp.COMMANDS | {AttachCommands}
    # (A CSS_PATH is read relative to the class's own module: the app's, from its folder.)
    CSS_PATH = str(Path(sys.modules[MsiTuiApp.__module__].__file__ or ".").with_name(str(MsiTuiApp.CSS_PATH)))
    # The app's quit keys keep their keys and now detach (AttachedQuit.request).
    BINDINGS = [dataclasses.replace(b, description="Detach" if b.show else b.description, tooltip=DETACH_HELP)
                for b in MsiTuiApp.BINDINGS if isinstance(b, Binding) and b.action == "quit"]

    quitting: AttachedQuit

    def __init__(self, context: AppContext, services: list[RemoteService]) -> None:
        super().__init__(context)
        self.remote = services
        self.detached = False
        self.quitting = AttachedQuit(self)
        self.actions.quitting = self.quitting
        self._told_gone: set[str] = set()
        self._offering_exit = False

    def on_mount(self) -> None:
        # (MsiTuiApp's own on_mount runs too: Textual calls the handler of every class.)
        self.call_after_refresh(self._say_attached)
        self.set_interval(0.5, self._watch_services)

    def on_unmount(self) -> None:
        for service in self.remote:  # (the app's own on_unmount runs too)
            service.detach()

    def _say_attached(self) -> None:
        for service in self.remote:
            info = service.info
            self.emit("info", f"attached to service {info.name} ({info.kind}, pid {info.pid}, msi-tui "
                              f"{info.version or '?'}): F10 or `detach` leaves it running, `quit service` stops it")

    # --- detach and quit service ----------------------------------------------------------

    def detach(self) -> None:
        """Leave the app; the services go on."""
        self.detached = True
        self.exit_with(0)

    def run_command(self, line: str) -> None:
        words = [w.lower() for w in line.strip().lstrip(":/").split()]
        if words == ["detach"]:
            self.detach()
        elif len(words) == 2 and words[0] in ("quit", "q", "exit") and words[1] in ("service", "services"):
            self.quit_service()
        else:
            super().run_command(line)

    def quit_service(self) -> None:
        """Ask, then drain and stop the attached services; asked again while they drain, force."""
        if self.quitting.phase == "draining":
            self.quitting.stop_services()
            return
        running = [s.name for s in self.remote if not s.stopped]
        if not running:
            self.emit("warning", "quit service: no attached service is running")
            return
        question = (f"Stop {', '.join(running)}?\n\nIt delivers what is in flight, then stops, for every "
                    "client attached. F10 (detach) leaves it running instead.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.quitting.stop_services()
                self.emit("warning", "quit service: draining, then stopping; `quit service` again forces, "
                                     "F10 detaches and leaves it draining")

        self.push_screen(Confirm(question, "Stop", "Cancel"), answered)

    def key_help(self) -> list[tuple[str, str]]:
        return [*super().key_help(), ("detach", DETACH_HELP), ("quit service", QUIT_SERVICE_HELP)]

    # --- services that end ---------------------------------------------------------------------

    def _watch_services(self) -> None:
        """A service that stopped or vanished is said once; the app then offers to exit."""
        if self.quitting.phase != "running":
            return  # our own `quit service`: the app exits once they stopped
        gone = [s for s in self.remote if s.gone and s.name not in self._told_gone]
        for service in gone:
            self._told_gone.add(service.name)
            self.emit("error", f"service {service.name}: {service.gone}")
        if gone and not self._offering_exit:
            self._offering_exit = True
            everything = all(s.gone for s in self.remote)
            names = ", ".join(s.name for s in self.remote if s.gone)
            question = (f"{names}: {gone[0].gone}.\n\n"
                        + ("Nothing attached runs any more. Exit?" if everything else "Exit the app?"))

            def answered(yes: bool | None) -> None:
                self._offering_exit = False
                if yes:
                    self.exit_with(0)

            self.push_screen(Confirm(question, "Exit", "Stay"), answered)


def run_attached(context: AppContext, services: list[RemoteService]) -> tuple[int, AttachedApp]:
    """Run the app until the operator detaches (or exits); the services are left as they are."""
    app = AttachedApp(context, services)
    try:
        result = app.run()
    finally:
        for service in services:
            service.detach()
    return (result if isinstance(result, int) else (app.return_code or 0)), app


__all__ = ["AttachedApp", "AttachedQuit", "Confirm", "run_attached"]
