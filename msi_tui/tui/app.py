"""The full-screen app: header, Upload and Reconstruct panes, log, command bar, footer.

Threads: each service's start() runs in a thread worker (it may block for seconds on the
broker); everything else happens on the app's thread. Engine threads only ever call the
EventBuffer; a 5 Hz timer drains it and reads each service's snapshot() inside one
batch_update, so the cost of the UI does not grow with the message rate.

Keys: on the main screen every printable key is text for the command bar (typed elsewhere, it
takes the focus back to the bar with it); commands also sit on F-keys, which work everywhere.
What the operator can do lives in `Actions`, quitting in `QuitControl`: both are composed
here and see the app only through `AppHost`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Literal

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, Tab, Tabs
from textual.worker import Worker, WorkerState

from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot
from msi_tui.errors import OperatorError
from msi_tui.formatting import LogLevel, exit_summary
from msi_tui.tui.actions import Actions
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.commands import MsiCommandProvider
from msi_tui.tui.context import AppContext, PaneName
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.formatting import LogLine, describe_in_app, styled_state
from msi_tui.tui.header import ClusterHeader
from msi_tui.tui.log_panel import EventLog, LogFile
from msi_tui.tui.pane import Line
from msi_tui.tui.quitting import QuitControl
from msi_tui.tui.reconstruct_pane import ReconstructPane
from msi_tui.tui.slots import ServiceSlot
from msi_tui.tui.upload_pane import UploadPane

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


class MsiTuiApp(App[int]):
    """msi-tui's full-screen front end over an uploader and/or a reconstructor."""

    TITLE = "msi-tui"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {MsiCommandProvider}
    # Only F-keys (and ctrl): they work everywhere, even while typing a command, and no
    # letter ever acts instead of being typed. No ctrl+s/ctrl+q (flow control) or ctrl+b (tmux).
    BINDINGS = [
        Binding("f1", "help", "Help", id="help", key_display="F1",
                tooltip="List every command, key and word shown"),
        Binding("f2", "check", "Check", id="check", key_display="F2",
                tooltip="Write counts, files in flight, pending deliveries, lag and connection to the log"),
        Binding("f3", "pause", "Pause", id="pause", key_display="F3", tooltip="Pause sending and consuming"),
        Binding("f4", "resume", "Resume", id="resume", key_display="F4", tooltip="Resume sending and consuming"),
        Binding("f5", "errors", "Errors", id="errors", key_display="F5",
                tooltip="The log: warnings and errors only, or all"),
        Binding("f6", "switch_pane", "Pane", id="switch_pane", key_display="F6", tooltip="Show the other pane"),
        Binding("f8,ctrl+l", "clear_log", "Clear log", id="clear_log", show=False,
                tooltip="Clear the log panel (the log file keeps everything)"),
        Binding("f10", "quit", "Quit", id="quit", key_display="F10",
                tooltip="Deliver what is in flight, then exit (asks first while a file is sent); again to force"),
        Binding("ctrl+c", "quit", "Quit (interrupt)", id="interrupt", show=False, priority=True,
                tooltip="Same as quit"),
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
        self.main_screen: Screen[Any]
        self.front_pane: PaneName = context.initial_pane or (
            "reconstruct" if context.uploader is None and context.reconstructor else "upload"
        )
        self.quitting = QuitControl(self)
        self.actions = Actions(self, self.quitting)

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
        yield Footer(show_command_palette=False)  # (ctrl+p: in help; the F-keys need the room)

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
        self.quitting.install_signal_handlers()
        self.main_screen.query_one(CommandBar).focus()
        self.refresh_view()
        self.set_interval(1 / ctx.refresh_hz, self.refresh_view)

    def on_unmount(self) -> None:
        self.quitting.remove_signal_handlers()
        self.log_file.close()

    # --- keys, the command bar, rows --------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        """A printable key that reached the app was typed outside the command bar (which
        keeps its own): it goes to the bar, and the focus with it."""
        if self.screen is self.main_screen and event.is_printable and event.character:
            event.stop()
            event.prevent_default()
            self.actions.focus_command(event.character)

    def on_paste(self, event: events.Paste) -> None:
        if self.screen is self.main_screen and not isinstance(self.focused, CommandBar):
            event.stop()
            self.actions.focus_command(event.text.splitlines()[0] if event.text else "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not isinstance(event.input, CommandBar):
            return
        line = event.value
        event.input.remember(line.strip())
        event.input.value = ""
        self.run_command(line)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: that file's details."""
        table = event.data_table
        if isinstance(table, FilesTable) and 0 <= event.cursor_row < len(table.shown_files):
            self.actions.open_file(table.shown_files[event.cursor_row],
                                   "upload" if table.id == "upload-files" else "reconstruct")

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        pane: PaneName = "reconstruct" if event.tab.id == "reconstruct" else "upload"
        self.front_pane = pane
        main = self.main_screen.query_one("#main")
        for name in ("upload", "reconstruct"):
            main.set_class(name == pane, f"-show-{name}")

    def run_command(self, line: str) -> None:
        """Run one typed command line (the command bar and the palette come here)."""
        self.actions.run_command(line)

    def prefill_command(self, text: str) -> None:
        """Put `text` in the command bar and focus it (the palette's `Upload a file…`)."""
        bar = self.main_screen.query_one(CommandBar)
        bar.value = ""
        self.actions.focus_command(text)

    # --- actions of the key bindings (the commands are in Actions) ---------------------------

    def action_help(self) -> None:
        self.actions.help()

    def action_check(self) -> None:
        self.actions.check()

    def action_pause(self) -> None:
        self.actions.pause()

    def action_resume(self) -> None:
        self.actions.resume()

    def action_errors(self) -> None:
        self.actions.toggle_errors()

    def action_switch_pane(self) -> None:
        self.actions.switch_pane()

    def action_clear_log(self) -> None:
        self.actions.clear_log()

    def action_focus_panes(self) -> None:
        self.actions.focus_panes()

    def action_quit(self) -> None:  # type: ignore[override]  # (sync: scripts call it directly)
        self.quitting.request()

    def exit_with(self, code: int) -> None:
        """Exit with `code` as both the app's result and its return code."""
        self.exit(code, return_code=code)

    def key_help(self) -> list[tuple[str, str]]:
        """(keys, description) per binding id, e.g. ("F2", "Check"), after any keymap."""
        grouped: dict[str, list[Binding]] = {}
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if binding.id and not binding.system:
                    grouped.setdefault(binding.id, []).append(binding)
        rows = []
        for group in grouped.values():
            keys = dict.fromkeys(
                self.get_key_display(replace(b, key_display=None)).replace("f", "F", 1)
                if b.key.startswith("f") and b.key[1:].isdigit()
                else self.get_key_display(replace(b, key_display=None))
                for b in group
            )
            rows.append((" or ".join(keys), group[0].tooltip or group[0].description))
        rows.append((self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Command palette"))
        return rows

    # --- services ------------------------------------------------------------------------

    def _start_services(self) -> None:
        upload_pane = self.main_screen.query_one(UploadPane)
        reconstruct_pane = self.main_screen.query_one(ReconstructPane)
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
            return f", watching {up.folder.absolute()}"
        if name == "reconstruct" and rec is not None:
            return f", writing to {rec.output_dir.absolute()} (group {rec.group_id})"
        return ""

    def _pane(self, name: PaneName) -> UploadPane | ReconstructPane:
        if name == "upload":
            return self.main_screen.query_one(UploadPane)
        return self.main_screen.query_one(ReconstructPane)

    # --- the refresh timer ----------------------------------------------------------------

    def refresh_view(self) -> None:
        """Drain engine events and redraw every pane from fresh snapshots, in one batch."""
        if not self.is_running:
            return  # shutting down: the widgets are being removed, the timer may still tick
        with self.batch_update():
            events, dropped = self.context.events.drain()
            lines = [LogLine(e.at or self.context.clock(), *describe_in_app(e)) for e in events]
            if dropped:
                lines.append(LogLine(self.context.clock(), "warning",
                                     f"{dropped:,} events not shown (the log fell behind); counts stay exact"))
            self.write_log(lines)
            if self.screen is not self.main_screen:
                # A modal covers the panes: redrawing them under it is wasted work; a file's
                # details follow the file.
                self.actions.follow_detail()
                return
            connections: dict[str, str] = {}
            pending: int | None = None
            up, rec = self.slots["upload"], self.slots["reconstruct"]
            if up.status in ("starting", "running") and self.context.uploader is not None:
                usnap = self.context.uploader.snapshot()
                self.main_screen.query_one(UploadPane).show(usnap)
                connections["upload"] = usnap.connection
                pending = usnap.pending_deliveries
            if rec.status in ("starting", "running") and self.context.reconstructor is not None:
                r = self.context.reconstructor
                rsnap = r.snapshot()
                self.main_screen.query_one(ReconstructPane).show(rsnap, r.output_dir, r.group_id)
                connections["reconstruct"] = rsnap.connection
            for slot in self.slots.values():
                if slot.status == "failed":
                    connections[slot.name] = "not started"  # says more than a stale "connecting"
            if connections:
                self.main_screen.query_one(ClusterHeader).show_connections(connections)
            self.quitting.show_progress(self.main_screen.query_one("#status", Line), pending)

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


def summary_lines(app: MsiTuiApp) -> list[str]:
    """The exit summary of the app's services (printed to the shell once the app is gone)."""
    ctx = app.context
    up: UploadSnapshot | str | None = None
    rec: ReconstructSnapshot | str | None = None
    if app.slots["upload"].status == "failed":
        up = app.slots["upload"].error or "could not start"
    elif app.slots["upload"].status == "running" and ctx.uploader is not None:
        up = ctx.uploader.snapshot()
    if app.slots["reconstruct"].status == "failed":
        rec = app.slots["reconstruct"].error or "could not start"
    elif app.slots["reconstruct"].status == "running" and ctx.reconstructor is not None:
        rec = ctx.reconstructor.snapshot()
    group = ctx.reconstructor.group_id if ctx.reconstructor is not None else ""
    return exit_summary(up, rec, ctx.log_path, group=group)


def run_app(context: AppContext) -> int:
    """Run the app until the operator quits; print the exit summary; return the process
    exit code.

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
        print("\n".join(summary_lines(app)), file=sys.stdout, flush=True)
    return result if isinstance(result, int) else (app.return_code or 0)
