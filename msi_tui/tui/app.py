"""The full-screen app: header, Upload and Reconstruct panes, log, command bar, footer.

Threads: each service's start() runs in a thread worker (it may block for seconds on the
broker); everything else happens on the app's thread. Engine threads only ever call the
EventBuffer; a 5 Hz timer drains it and reads each service's snapshot() inside one
batch_update, so the cost of the UI does not grow with the message rate.
"""

from __future__ import annotations

from typing import Literal

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Footer, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from msi_tui.errors import OperatorError
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.commands import MsiCommandProvider
from msi_tui.tui.context import AppContext, PaneName
from msi_tui.formatting import LogLevel, describe_event
from msi_tui.tui.formatting import LogLine, styled_state
from msi_tui.tui.header import ClusterHeader, combined_connection
from msi_tui.tui.log_panel import EventLog, LogFile
from msi_tui.tui.pane import Line
from msi_tui.tui.reconstruct_pane import ReconstructPane
from msi_tui.tui.slots import ServiceSlot
from msi_tui.tui.upload_pane import UploadPane
from msi_tui.tui.actions import ActionsMixin
from msi_tui.tui.quitting import QuitMixin

__all__ = ["AppContext", "MsiTuiApp", "run_app"]

Layout = Literal["tabs", "stacked", "side"]


def choose_layout(width: int, height: int) -> Layout:
    """Side by side when each pane gets ~80 columns, stacked when tall, else one at a time."""
    if width >= 160 and height >= 30:
        return "side"
    if height >= 36:
        return "stacked"
    return "tabs"


class Main(Vertical):
    """Everything between header and footer; re-arranges the panes when the terminal resizes."""

    def on_resize(self, event: Resize) -> None:
        layout = choose_layout(self.app.size.width, self.app.size.height)
        for name in ("tabs", "stacked", "side"):
            self.set_class(name == layout, f"-{name}")


class MsiTuiApp(ActionsMixin, QuitMixin, App[int]):
    """msi-tui's full-screen front end over an uploader and/or a reconstructor."""

    TITLE = "msi-tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {MsiCommandProvider}
    # F-keys work everywhere (even while typing a command); the letters only when the
    # command bar is not focused. No ctrl+s/ctrl+q (flow control) or ctrl+b (tmux).
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="help", key_display="F1",
                tooltip="List every command and key"),
        Binding("f2,c", "check", "Check", id="check", key_display="F2",
                tooltip="Write counts, pending deliveries, lag and connection to the log"),
        Binding("f3,p", "pause", "Pause", id="pause", key_display="F3",
                tooltip="Pause sending and consuming"),
        Binding("f4,r", "resume", "Resume", id="resume", key_display="F4",
                tooltip="Resume sending and consuming"),
        Binding("f6,w", "switch_pane", "Pane", id="switch_pane", key_display="F6",
                tooltip="Show or focus the other pane"),
        Binding("f8,ctrl+l", "clear_log", "Clear log", id="clear_log", show=False,
                tooltip="Clear the log panel (the log file keeps everything)"),
        Binding("colon,slash", "focus_command", "Command", id="focus_command", show=False,
                tooltip="Type a command"),
        Binding("f10,q", "quit", "Quit", id="quit", key_display="F10",
                tooltip="Drain in-flight chunks, then exit; again to force"),
        Binding("ctrl+c", "quit", "Quit (interrupt)", id="interrupt", show=False, priority=True,
                tooltip="Same as quit: drain, then exit; again to force"),
    ]

    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.slots: dict[PaneName, ServiceSlot] = {
            "upload": ServiceSlot("upload", context.uploader),
            "reconstruct": ServiceSlot("reconstruct", context.reconstructor),
        }
        self.log_file = LogFile(context.log_path)
        self._start_workers: dict[Worker[str], ServiceSlot] = {}
        self.main_screen: Screen[None]
        self.front_pane: PaneName = context.initial_pane or (
            "reconstruct" if context.uploader is None and context.reconstructor else "upload"
        )

    # --- building ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        ctx = self.context
        yield ClusterHeader(ctx.cluster_name, ctx.bootstrap, ctx.topic, id="header")
        with Main(id="main"):
            yield Tabs(Tab("Upload", id="upload"), Tab("Reconstruct", id="reconstruct"),
                       active=self.front_pane, id="pane-tabs")
            with Container(id="panes"):
                yield UploadPane(id="upload-pane")
                yield ReconstructPane(id="reconstruct-pane")
            yield EventLog(max_lines=ctx.log_lines, id="log")
            yield Line("", id="status")
            with Horizontal(id="command-row"):
                yield Static("›", id="prompt")
                yield CommandBar(id="command")
        yield Footer()

    def on_mount(self) -> None:
        ctx = self.context
        # Queries go to this screen, not `self.screen`: the refresh timer keeps updating the
        # panes while the help screen or the command palette is on top.
        self.main_screen = self.screen
        self.main_screen.query_one(CommandBar).cursor_blink = ctx.cursor_blink
        self.main_screen.query_one("#main").add_class(f"-show-{self.front_pane}")
        self.log_file.open()
        self.emit("info", f"cluster {ctx.cluster_name} at {ctx.bootstrap}, topic {ctx.topic}")
        if self.log_file.error:
            self.emit("warning", self.log_file.error)
        self._start_services()
        self.install_signal_handlers()
        self.main_screen.query_one(CommandBar).focus()
        self.refresh_view()
        self.set_interval(1 / ctx.refresh_hz, self.refresh_view)

    def on_unmount(self) -> None:
        self.remove_signal_handlers()
        self.log_file.close()

    # --- services ------------------------------------------------------------------------

    def _start_services(self) -> None:
        upload_pane, reconstruct_pane = self.main_screen.query_one(UploadPane), self.main_screen.query_one(ReconstructPane)
        up, rec = self.context.uploader, self.context.reconstructor
        if up is None:
            upload_pane.show_absent()
        else:
            upload_pane.show_folder(up.folder)
        if rec is None:
            reconstruct_pane.show_absent()
        else:
            reconstruct_pane.show_where(rec.output_dir, rec.group_id)
        for slot in self.slots.values():
            if slot.service is not None:
                slot.status = "starting"
                self._start_workers[self._start_service(slot)] = slot

    @work(thread=True, exit_on_error=False, group="start")
    def _start_service(self, slot: ServiceSlot) -> str:
        # Runs in a thread: start() may block for seconds while it reaches the broker. The
        # outcome comes back through on_worker_state_changed; this thread touches no widget.
        assert slot.service is not None
        slot.service.start()
        return slot.name

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place that handles the outcome of every start worker."""
        slot = self._start_workers.get(event.worker)
        if slot is None or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        del self._start_workers[event.worker]
        if event.state == WorkerState.SUCCESS:
            slot.status = "running"
            self.emit("success", f"{slot.name} started" + self._where(slot.name))
            if slot.stop_requested:  # quit arrived while start() was blocking
                assert slot.service is not None
                slot.service.request_stop()
        else:
            error = event.worker.error
            # An OperatorError is a message for the operator; anything else is a bug, so
            # keep its type in view rather than pretending it is a plain message.
            message = str(error) if isinstance(error, OperatorError) else f"{type(error).__name__}: {error}"
            slot.status, slot.error = "failed", message
            self._pane(slot.name).show_start_error(message)
            self._pane(slot.name).query_one(f"#{slot.name}-summary", Line).set(styled_state("start failed"))
            self.emit("error", f"{slot.name} could not start: {message}")
        self.refresh_view()

    def _where(self, name: PaneName) -> str:
        up, rec = self.context.uploader, self.context.reconstructor
        if name == "upload" and up is not None and up.folder is not None:
            return f", watching {up.folder}"
        if name == "reconstruct" and rec is not None:
            return f", writing to {rec.output_dir} (group {rec.group_id})"
        return ""

    def _pane(self, name: PaneName) -> UploadPane | ReconstructPane:
        return self.main_screen.query_one(UploadPane) if name == "upload" else self.main_screen.query_one(ReconstructPane)

    # --- the refresh timer ----------------------------------------------------------------

    def refresh_view(self) -> None:
        """Drain engine events and redraw every pane from fresh snapshots, in one batch."""
        if not self.is_running:
            return  # shutting down: the widgets are being removed, the timer may still tick
        with self.batch_update():
            events, dropped = self.context.events.drain()
            lines = [LogLine(e.at or self.context.clock(), *describe_event(e)) for e in events]
            if dropped:
                lines.append(LogLine(self.context.clock(), "warning",
                                     f"{dropped:,} events not shown (the log fell behind); counts stay exact"))
            self.write_log(lines)
            if self.screen is not self.main_screen:
                return  # a modal (help) covers the panes: redrawing them under it is wasted work
            connections: list[str] = []
            pending: int | None = None
            up, rec = self.slots["upload"], self.slots["reconstruct"]
            if up.status in ("starting", "running") and self.context.uploader is not None:
                usnap = self.context.uploader.snapshot()
                self.main_screen.query_one(UploadPane).show(usnap)
                connections.append(usnap.connection)
                pending = usnap.pending_deliveries
            if rec.status in ("starting", "running") and self.context.reconstructor is not None:
                r = self.context.reconstructor
                rsnap = r.snapshot()
                self.main_screen.query_one(ReconstructPane).show(rsnap, r.output_dir, r.group_id)
                connections.append(rsnap.connection)
            if any(s.status == "failed" for s in self.slots.values()):
                connections.append("not started")  # says more than a stale "connecting"
            if connections:
                self.main_screen.query_one(ClusterHeader).show_connection(combined_connection(connections))
            self.show_quit_progress(pending)

    # --- the log ---------------------------------------------------------------------------

    def emit(self, level: LogLevel, message: str) -> None:
        """Write one line of the app's own (not an engine event) to the panel and the file."""
        self.write_log([LogLine(self.context.clock(), level, message)])

    def write_log(self, lines: list[LogLine]) -> None:
        if not lines:
            return
        self.log_file.write(lines)
        if self.is_running:
            self.main_screen.query_one(EventLog).add(lines)


def run_app(context: AppContext) -> int:
    """Run the app until the operator quits; return the process exit code.

    0 after a graceful quit (everything drained), 1 after a forced quit that gave up
    chunks still in flight. Whatever ended the app, no service is left running.
    """
    app = MsiTuiApp(context)
    try:
        result = app.run()
    finally:
        # A crash or an external exit skipped the drain: stop what still runs, boundedly.
        for slot in app.slots.values():
            if slot.active and slot.service is not None:
                slot.service.force_stop()
                slot.service.wait_stopped(timeout=5.0)
    return result if isinstance(result, int) else (app.return_code or 0)
