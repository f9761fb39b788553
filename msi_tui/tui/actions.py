"""What the operator can do: one method per command, shared by keys, command bar and palette.

Composed into the app (`app.actions`), it reaches the app only through `AppHost`."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import Tabs

from msi_tui.console import reconstruct_counts, upload_counts
from msi_tui.engine.stats import FileProgress
from msi_tui.errors import OperatorError
from msi_tui.formatting import in_flight_lines
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.commands import PANES, CommandError, parse_command
from msi_tui.tui.context import PaneName
from msi_tui.tui.file_detail import FileDetailScreen, Side
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.help_screen import HelpScreen
from msi_tui.tui.host import AppHost
from msi_tui.tui.log_panel import EventLog
from msi_tui.tui.quitting import QuitControl
from msi_tui.tui.slots import ServiceSlot

LISTED_MATCHES = 5


class Actions:
    """Every command of the app, run against an `AppHost`."""

    def __init__(self, app: AppHost, quitting: QuitControl) -> None:
        self.app = app
        self.quitting = quitting

    def run_command(self, line: str) -> None:
        """Run one typed command line (the command bar and the palette come here)."""
        try:
            command = parse_command(line)
        except CommandError as exc:
            self.app.emit("error", str(exc))
            self.app.bell()
            return
        if command is None:
            return
        argument = command.argument
        if command.name != "quit":
            self.quitting.cancel()
        match command.name:
            case "check":
                self.check()
            case "pause":
                self.pause(argument)
            case "resume":
                self.resume(argument)
            case "upload":
                self.upload_file(argument)
            case "show":
                self.show(argument)
            case "errors":
                self.toggle_errors()
            case "clear":
                self.clear_log()
            case "log":
                where = self.app.context.log_path
                self.app.emit("info", f"full log: {where}" if where else "no log file in this session")
            case "help":
                self.help()
            case "quit":
                self.quitting.request()

    # --- check, pause, resume, upload ----------------------------------------------------

    def check(self) -> None:
        """Write the counts of every service to the log: the headless console's words (the
        seed's `check`, and receipts), so `check` reads the same wherever it is typed; then
        each file in flight with how far it got."""
        app = self.app
        app.refresh_view()  # so the lines match what the panes show right now
        for slot in app.slots.values():
            if slot.status == "failed":
                app.emit("error", f"{slot.name}: not running: {slot.error}")
            elif slot.name == "upload" and slot.status != "absent" and app.context.uploader is not None:
                up = app.context.uploader
                snap = up.snapshot()
                app.emit("info", f"upload ({snap.state}): {upload_counts(up)}")
                for line in in_flight_lines(snap.files, snap.taken_at):
                    app.emit("info", f"upload {line}")
            elif slot.name == "reconstruct" and slot.status != "absent" and app.context.reconstructor is not None:
                rec = app.context.reconstructor
                rsnap = rec.snapshot()
                app.emit("info", f"reconstruct ({rsnap.state}): {reconstruct_counts(rec)}")
                for line in in_flight_lines(rsnap.files, rsnap.taken_at):
                    app.emit("info", f"reconstruct {line}")
        if not any(s.service for s in app.slots.values()):
            app.emit("warning", "check: no service in this session")
        dropped = app.context.events.dropped_total
        if dropped:
            app.emit("warning", f"check: {dropped:,} events were too many to show in the log")

    def _targets(self, pane: str, verb: str) -> list[ServiceSlot]:
        chosen = [s for s in self.app.slots.values() if not pane or s.name == pane]
        running = [s for s in chosen if s.status == "running" and s.service is not None]
        if not running:
            self.app.emit("warning", f"{verb}: no {pane or 'service'} is running")
        return running

    def pause(self, pane: str = "") -> None:
        """Pause the uploader (stop sending new chunks) and/or the reconstructor."""
        for slot in self._targets(pane, "pause"):
            assert slot.service is not None
            slot.service.pause()
            self.app.emit("info", f"paused {slot.name}")
        self.app.refresh_view()

    def resume(self, pane: str = "") -> None:
        """Resume after `pause`."""
        for slot in self._targets(pane, "resume"):
            assert slot.service is not None
            slot.service.resume()
            self.app.emit("info", f"resumed {slot.name}")
        self.app.refresh_view()

    def upload_file(self, argument: str) -> None:
        """Send one file now through the running uploader (`upload PATH`)."""
        path = Path(argument).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        slot, uploader = self.app.slots["upload"], self.app.context.uploader
        if slot.status != "running" or uploader is None:
            self.app.emit("error", f"upload {path}: the uploader is not running")
        elif path.is_dir():
            self.app.emit("error", f"upload {path}: is a folder; upload sends one file")
        elif not path.is_file():
            self.app.emit("error", f"upload {path}: no such file")
        else:
            try:
                uploader.enqueue_file(path)
            except OperatorError as exc:
                self.app.emit("error", f"upload {path}: {exc}")
            else:
                self.app.emit("info", f"upload {path}: queued")
        self.app.refresh_view()

    # --- panes, focus, log -----------------------------------------------------------------

    def show(self, argument: str) -> None:
        """`show upload|reconstruct` brings a pane to the front; `show FILE` opens its details."""
        if argument in PANES:
            self.show_pane(argument)  # type: ignore[arg-type]
        else:
            self.show_file(argument)

    def show_pane(self, pane: PaneName) -> None:
        """Bring a pane to the front (tabs layout). Focus stays where it was: in the command
        bar, typing goes on; in a table, the shown pane's table takes it."""
        screen = self.app.main_screen
        moved = isinstance(screen.focused, FilesTable)
        self.app.front_pane = pane
        screen.query_one(Tabs).active = pane  # the TabActivated handler swaps the classes
        if moved:
            screen.set_focus(screen.query_one(f"#{pane}-files", FilesTable))

    def switch_pane(self) -> None:
        """The other pane: brought to the front when one shows at a time."""
        self.show_pane("reconstruct" if self.app.front_pane == "upload" else "upload")

    def focus_panes(self) -> None:
        """Leave the command bar for the front pane's table (↑↓ rows, Enter details)."""
        screen = self.app.main_screen
        screen.set_focus(screen.query_one(f"#{self.app.front_pane}-files", FilesTable))

    def focus_command(self, text: str = "") -> None:
        """Back to the command bar, with `text` typed (a key pressed elsewhere)."""
        bar = self.app.main_screen.query_one(CommandBar)
        self.app.main_screen.set_focus(bar)
        if text:
            bar.insert_text_at_cursor(text)

    def clear_log(self) -> None:
        self.app.main_screen.query_one(EventLog).clear()

    def toggle_errors(self) -> None:
        log = self.app.main_screen.query_one(EventLog)
        log.show_problems_only(not log.problems_only)

    def help(self) -> None:
        """Show every command, key and word on a modal screen."""
        if isinstance(self.app.screen, HelpScreen):
            return
        if not self.app.is_screen_installed("help"):  # built once: its table is costly to lay out
            self.app.install_screen(HelpScreen(self.app.key_help()), name="help")
        self.app.push_screen("help")

    # --- one file's details ----------------------------------------------------------------

    def rows(self) -> tuple[list[Side], float]:
        """Every file row both services know now, uploads first, and when they were taken."""
        ctx, found, at = self.app.context, [], 0.0
        if ctx.uploader is not None and self.app.slots["upload"].status == "running":
            snap = ctx.uploader.snapshot()
            found += [Side("upload", f) for f in snap.files]
            at = max(at, snap.taken_at)
        if ctx.reconstructor is not None and self.app.slots["reconstruct"].status == "running":
            rsnap = ctx.reconstructor.snapshot()
            found += [Side("reconstruct", f) for f in rsnap.files]
            at = max(at, rsnap.taken_at)
        return found, at or time.time()

    def sides_of(self, key: str) -> tuple[list[Side], float]:
        """Both services' rows of one upload (its id, or its path when it has none)."""
        rows, at = self.rows()
        return [side for side in rows if (side.file.upload_id or side.file.path) == key], at

    def open_file(self, f: FileProgress, service: str = "upload") -> None:
        if isinstance(self.app.screen, FileDetailScreen):
            return
        sides, at = self.sides_of(f.upload_id or f.path)
        self.app.push_screen(FileDetailScreen(sides or [Side(service, f)], at))

    def show_file(self, name: str) -> None:
        """`show FILE`: the file whose path is `name`, or ends with it, or has it in its name;
        the latest attempt when a file was sent more than once."""
        rows, _ = self.rows()
        for matches in (lambda p: p == name, lambda p: p.endswith("/" + name),
                        lambda p: name.lower() in p.lower()):
            found = [side.file for side in rows if matches(side.file.path)]
            if found:
                break
        else:
            self.app.emit("warning", f"show: no file {name!r} among the files on screen (upload, reconstruct)")
            return
        paths = sorted({f.path for f in found})
        if len(paths) > 1:
            listed = ", ".join(paths[:LISTED_MATCHES]) + (" …" if len(paths) > LISTED_MATCHES else "")
            self.app.emit("warning", f"show: {len(paths)} files match {name!r}: {listed}; type more of the name")
            return
        self.open_file(max(found, key=lambda f: f.started))

    def follow_detail(self) -> None:
        """At every refresh while a file's details are open: redraw them from its latest rows."""
        screen = self.app.screen
        if isinstance(screen, FileDetailScreen):
            screen.follow(*self.sides_of(screen.key))
